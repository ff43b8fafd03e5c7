"""Model zoo: backbones behind one Lightning interface, tabular baselines, transfer learning.

The models Table 2 compares, by their conf/model names: the paper's networks in its order, our
RCMNet adaptation, then the tabular baselines; `prcrs_paper`, the published network as released,
is run apart. The sequence networks read several days (`history=days`) and are compared in the
history study.
"""

PAPER_NETWORKS = ("cnn", "transformer", "squeezeformer", "prcrs")
DEEP = (*PAPER_NETWORKS, "rcmnet")
TABULAR = ("logreg", "hgb", "forest", "tree", "measix")
SEQUENCE = ("gru", "day_transformer")
