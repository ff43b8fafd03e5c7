"""Model zoo: backbones behind one Lightning interface, tabular baselines, bedside scores,
transfer learning. Which models exist, how they are named and which studies run them is read
from their configs (`prcrs.models.catalogue`)."""

from prcrs.models import catalogue  # noqa: F401  registers ${models:<study>} for the experiment configs
