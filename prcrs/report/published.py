"""The paper's published numbers (Wei et al., BMC Bioinformatics 2024), for side-by-side tables."""

# Table 2: macro precision, recall, F1 at threshold 0.3.
TABLE2 = {
    "cnn": (0.5382, 0.5884, 0.5442),
    "transformer": (0.6747, 0.6806, 0.6776),
    "squeezeformer": (0.8613, 0.7108, 0.7640),
    "prcrs": (0.9255, 0.7482, 0.8112),
}

# Table 3: PrCRS with one factor group deleted.
TABLE3 = {
    "del_cytokines": (0.6118, 0.8877, 0.6628),
    "del_biochemical": (0.6364, 0.9727, 0.7003),
    "del_blood_routine": (0.9933, 0.6667, 0.7466),
    "del_clotting": (0.7949, 0.7466, 0.7685),
}

# Fig. 8 claims for the best factor combination: horizon -> (sensitivity >, specificity >).
FIG8_CLAIMS = {1: (0.80, 0.95), 2: (0.65, 0.90), 3: (0.50, 0.90)}
