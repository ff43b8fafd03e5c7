"""Model zoo: backbones behind one Lightning interface, tabular baselines, transfer learning.

The models Table 2 compares, by their conf/model names, in the paper's order (networks) and
then our baselines; `prcrs_paper`, the published network as released, is run apart.
"""

DEEP = ("cnn", "transformer", "squeezeformer", "prcrs")
TABULAR = ("logreg", "hgb", "forest", "tree", "measix")
