"""Model zoo: backbones behind one Lightning interface, tabular baselines, transfer learning.

The models Table 2 compares, by their conf/model names: the paper's networks in its order, our
RCMNet adaptation, then the tabular baselines; `prcrs_paper`, the published network as released,
is run apart; the bedside scores are the bar for every model. The sequence networks read several
days (`history=days`) and are compared in the history study.
"""

PAPER_NETWORKS = ("cnn", "transformer", "squeezeformer", "prcrs")
DEEP = (*PAPER_NETWORKS, "rcmnet")
BEDSIDE = ("measix", "teachey")  # simple clinical scores: m-EASIX and a Teachey-style cytokine model
TABULAR = ("logreg", "hgb", "forest", "tree", *BEDSIDE)
SEQUENCE = ("gru", "day_transformer")
