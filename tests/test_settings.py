import pytest

from aethera.errors import ConfigError
from aethera.settings import ENV_VARIABLES, load_settings


def test_defaults_load() -> None:
    s = load_settings({})
    assert s.port == 8000 and s.storage_backend == "local" and s.redis_url is None


def test_values_are_parsed() -> None:
    s = load_settings({"AETHERA_PORT": "9001", "AETHERA_CORS_ORIGINS": "http://a, http://b", "S3_ENDPOINT_URL": ""})
    assert s.port == 9001
    assert s.cors_origins == ("http://a", "http://b")
    assert s.s3_endpoint_url is None


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"AETHERA_PORT": "eighty"}, "AETHERA_PORT"),
        ({"AETHERA_PORT": "0"}, "AETHERA_PORT"),
        ({"AETHERA_PORT": "70000"}, "AETHERA_PORT"),
        ({"STORAGE_BACKEND": "ftp"}, "STORAGE_BACKEND"),
        ({"AETHERA_MAX_AOI_KM2": "-5"}, "AETHERA_MAX_AOI_KM2"),
        ({"AETHERA_LOG_LEVEL": "LOUD"}, "AETHERA_LOG_LEVEL"),
        ({"STORAGE_BACKEND": "s3"}, "S3_BUCKET"),
        ({"REDIS_URL": "http://x"}, "REDIS_URL"),
    ],
)
def test_bad_value_names_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert variable in str(info.value)


def test_secrets_never_in_repr_or_errors() -> None:
    s = load_settings(
        {"S3_SECRET_ACCESS_KEY": "supersecret", "S3_ACCESS_KEY_ID": "AKIDSECRET", "REDIS_URL": "redis://:pw123@h:1/0"}
    )
    text = repr(s) + str(s)
    for secret in ("supersecret", "AKIDSECRET", "pw123"):
        assert secret not in text
    with pytest.raises(ConfigError) as info:
        load_settings({"REDIS_URL": "http://:pw123@h"})
    assert "pw123" not in str(info.value)


def test_every_variable_is_documented() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    missing = [name for name in ENV_VARIABLES if f"`{name}`" not in readme]
    assert not missing, f"docs/configuration.md lacks {missing}"
