from __future__ import annotations

from pathlib import Path

import pytest

from msshop.contracts import config
from msshop.contracts.errors import ConfigError
from tests.cli_in_process import msshop_in_process
from tests.conftest import ROOT, sandbox_env


def test_shipped_config_file_lists_every_setting_with_its_default() -> None:
    values = config.read_file(ROOT / "configs" / "msshop.toml")
    assert set(values) == set(config.BY_KEY), "configs/msshop.toml must list every setting"
    for key, value in values.items():
        default = config.BY_KEY[key].default
        if isinstance(default, Path):  # file-relative in the file, cwd-relative by default
            assert value == (ROOT / "configs" / default).resolve()
        else:
            assert value == default, key


def test_every_setting_is_documented_with_its_environment_variable() -> None:
    text = (ROOT / "configs" / "msshop.toml").read_text()
    for setting in config.SETTINGS:
        assert setting.env in text, f"configs/msshop.toml does not mention {setting.env}"


def test_defaults_without_file_or_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                              ) -> None:
    monkeypatch.chdir(tmp_path)
    settings = config.load(env={})
    assert settings.sandbox_dir == tmp_path / "sandbox"
    assert settings.base_port == 7100
    assert settings.host == "127.0.0.1"


def test_precedence_default_file_environment_flag(tmp_path: Path) -> None:
    file = tmp_path / "my.toml"
    file.write_text('[sandbox]\nbase_port = 8000\ndir = "here"\n[services]\nhttp_timeout = 3\n')
    from_file = config.load(config_file=file, env={})
    assert (from_file.base_port, from_file.http_timeout) == (8000, 3.0)
    assert from_file.sandbox_dir == tmp_path / "here"  # relative to the file
    from_env = config.load(config_file=file, env={"MSSHOP_BASE_PORT": "9000"})
    assert from_env.base_port == 9000
    from_flag = config.load(config_file=file, env={"MSSHOP_BASE_PORT": "9000"},
                            overrides={"sandbox.base_port": 0})
    assert from_flag.base_port == 0
    via_env_var = config.load(env={"MSSHOP_CONFIG": str(file)})
    assert via_env_var.base_port == 8000


@pytest.mark.parametrize(("env", "expected"), [
    ({"MSSHOP_BASE_PORT": "abc"},
     "sandbox.base_port = 'abc' (from environment variable MSSHOP_BASE_PORT) is not allowed: "
     "use 0 (pick free ports) or a port from 1024 to 65500"),
    ({"MSSHOP_BASE_PORT": "80"}, "sandbox.base_port = '80'"),
    ({"MSSHOP_HTTP_TIMEOUT": "-1"}, "services.http_timeout = '-1'"),
    ({"MSSHOP_HTTP_TIMEOUT": "nan"}, "services.http_timeout = 'nan'"),
    ({"MSSHOP_LOG_LEVEL": "loud"}, "use one of debug, info, warning, error"),
    ({"MSSHOP_HOST": "localhost:80"}, "sandbox.host = 'localhost:80'"),
])
def test_bad_environment_value_names_key_and_what_is_allowed(env: dict[str, str], expected: str
                                                              ) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load(env=env)
    assert expected in caught.value.message
    assert "\n" not in caught.value.message


def test_bad_file_values(tmp_path: Path) -> None:
    file = tmp_path / "bad.toml"
    file.write_text("[sandbox]\nbase_prot = 8000\n")
    with pytest.raises(ConfigError, match=r"unknown setting 'sandbox\.base_prot'"):
        config.load(config_file=file, env={})
    file.write_text('[sandbox]\nbase_port = "8000"\n')  # a string is not a port in TOML
    with pytest.raises(ConfigError, match=r"sandbox.base_port = '8000' \(from .*bad.toml\)"):
        config.load(config_file=file, env={})
    file.write_text("[sandbox\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        config.load(config_file=file, env={})
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(config_file=tmp_path / "missing.toml", env={})


def test_cli_reports_a_bad_setting_in_one_line_with_exit_2(tmp_path: Path) -> None:
    result = msshop_in_process("status", env=sandbox_env(tmp_path, MSSHOP_BASE_PORT="99999"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: sandbox.base_port = '99999' (from environment variable MSSHOP_BASE_PORT) is "
        "not allowed: use 0 (pick free ports) or a port from 1024 to 65500"]
    assert "Traceback" not in result.stderr
