"""prcrs: severe CRS prediction after CAR-T therapy, reproduced, checked and extended."""

from prcrs import (
    moved_modules,
    paths,  # noqa: F401 - registers ${prcrs_home:}, which the configs' `paths` group reads
)

moved_modules.install()
