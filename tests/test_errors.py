"""One way to say an error at every front door (run.py, the prcrs CLI, reproduce.py)."""

from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError

from prcrs.errors import INTERRUPTED, ConfigError, say


def test_what_the_user_can_fix_is_one_line_and_a_bug_is_left_to_raise(capsys):
    assert say(ConfigError("seed=abc must be a whole number >= 0"), "experiment=table2") == 2
    assert capsys.readouterr().err == "error: experiment=table2: seed=abc must be a whole number >= 0\n"
    assert say(KeyboardInterrupt()) == 130 and capsys.readouterr().err == INTERRUPTED + "\n"
    try:
        OmegaConf.create({"model": {}}).model.name  # noqa: B018 - a config without a key the run reads
    except ConfigAttributeError as exc:
        assert say(exc) == 2
    assert capsys.readouterr().err.startswith("error: config model.name: Missing key name")
    assert say(ValueError("a bug")) is None and capsys.readouterr().err == ""
