"""The model catalogue, read from the model configs: each `conf/model/<name>.yaml` says, in its
`catalogue` block, how it is shown, which family it belongs to, where it stands in the tables
and which studies sweep it. Table 2's sweep, the other studies' sweeps (`${models:<study>}` in
their experiment configs), the quick reproduction and the report all read it, so a new model is
its class plus one yaml.

    >>> names(study="clinical")
    ('measix', 'teachey')
    >>> display("measix"), family_of("prcrs")
    ('m-EASIX', 'paper_network')
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

# paper_network: the paper's networks; network: other single-day networks; tabular: scikit-learn
# baselines; bedside: simple clinical scores; sequence: networks over several days; published:
# the published network as released (run apart)
FAMILIES = ("paper_network", "network", "tabular", "bedside", "sequence", "published")


@dataclass(frozen=True)
class Entry:
    """One model config's catalogue block."""

    name: str  # the config's name: model=<name>
    display: str  # how tables and figures name it
    family: str  # one of FAMILIES
    rank: int  # its place in the tables (Table 2's order), lowest first
    studies: tuple[str, ...]  # the studies whose sweeps run it (conf/experiment/<study>.yaml)
    quick: tuple[str, ...]  # the studies whose quick reproduction (the tests) runs it


def entries(config_dir: Path | None = None) -> tuple[Entry, ...]:
    """Every model config's entry under `config_dir` (default: the project's configs), in rank
    order; a config without a catalogue block (a shared base) is not a model."""
    from prcrs import paths
    from prcrs.errors import ConfigError

    out = []
    for path in sorted(Path(config_dir or paths.CONFIG_DIR, "model").glob("*.yaml")):
        block = OmegaConf.load(path).get("catalogue")
        if block is None:
            continue
        family = block.get("family")
        if family not in FAMILIES:
            raise ConfigError(f"{path.name}: catalogue.family={family} is not one of {', '.join(FAMILIES)}")
        out.append(Entry(path.stem, str(block.get("display", path.stem)), family, int(block.get("rank", 1000)),
                         tuple(block.get("studies", ())), tuple(block.get("quick", ()))))
    return tuple(sorted(out, key=lambda e: (e.rank, e.name)))


def names(study: str | None = None, family: str | tuple[str, ...] | None = None, quick: bool = False,
          config_dir: Path | None = None) -> tuple[str, ...]:
    """Model names in rank order: those of `study` (with `quick`, of its quick reproduction) and
    of `family` (one or several)."""
    families = (family,) if isinstance(family, str) else family
    return tuple(e.name for e in entries(config_dir) if (study is None or study in (e.quick if quick else e.studies))
                 and (families is None or e.family in families))


def display(name: str) -> str:
    """How the tables name model `name` (its own name when it has no entry)."""
    return next((e.display for e in entries() if e.name == name), name)


def family_of(name: str) -> str | None:
    return next((e.family for e in entries() if e.name == name), None)


def sweep_value(study: str) -> str:
    """The `${models:<study>}` resolver: the study's models as a Hydra sweep ("cnn,prcrs,...")."""
    from prcrs.errors import ConfigError

    found = names(study=study)
    if not found:
        raise ConfigError(f"no model config lists study {study!r} in its catalogue.studies")
    return ",".join(found)


if not OmegaConf.has_resolver("models"):  # ${models:table2} in conf/experiment/*.yaml
    OmegaConf.register_new_resolver("models", sweep_value)


def model_label(model: str, history=None) -> str:
    """A model with the history it reads, as reports and predictions name it: 'prcrs', 'forest +
    lags' (no history: none, None or NaN)."""
    shown = history is not None and history == history and history != "none"  # NaN != NaN
    return f"{model} + {history}" if shown else str(model)
