"""The top-level parser: config overrides are accepted before and after a command's options."""

from __future__ import annotations

import pytest

from awing.cli import main


class TestOverridesAfterOptions:
    def test_override_after_weights_reaches_the_config(self, tmp_path, capsys):
        config = tmp_path / "c.yaml"
        config.write_text("data:\n  name: aflw\n")
        # A misspelt key after --weights must be read as an override: the config check names it and its fix.
        code = main(["eval", str(config), "--weights", str(tmp_path / "w.safetensors"), "data.nmae=aflw2000-3d"])
        assert code == 2
        err = capsys.readouterr().err
        assert "data.nmae" in err and "data.name" in err

    def test_unknown_option_is_a_usage_error(self, capsys):
        with pytest.raises(SystemExit) as exc:
            main(["eval", "c.yaml", "--weights", "w.safetensors", "--no-such-option"])
        assert exc.value.code == 2
        assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err
