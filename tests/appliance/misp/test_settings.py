"""Settings: parsing at the edge, validation, encrypted API key at rest, public view."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from appliance.misp import SETTINGS, MispSettings, MispSettingsError, SettingsStore
from appliance.misp.integration import config_overrides

KEY = "K" * 20 + "0123456789abcdefghij"


def test_from_dict_refuses_unknown_keys_and_wrong_types() -> None:
    with pytest.raises(MispSettingsError, match="unknown key at colour in settings"):
        MispSettings.from_dict({"colour": "blue"})
    with pytest.raises(MispSettingsError, match="expected a boolean, got 1 at enabled"):
        MispSettings.from_dict({"enabled": 1})
    with pytest.raises(MispSettingsError, match="expected a list of strings.*at ioc_types"):
        MispSettings.from_dict({"ioc_types": "md5"})
    with pytest.raises(MispSettingsError, match="expected an integer, got 2.5 at page_limit"):
        MispSettings.from_dict({"page_limit": 2.5})


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"url": "ftp://x"}, "not an http"),
        ({"enabled": True}, "url is required"),
        ({"api_key": "short"}, "40 letters or digits"),
        ({"ioc_types": ["md5", "vulnerability"]}, "unknown MISP type 'vulnerability'"),
        ({"categories": ["Nope"]}, "unknown category 'Nope'"),
        ({"report_distribution": 4}, "at most 3, got 4 at report_distribution"),
        ({"pull_interval": 0}, "greater than 0, got 0 at pull_interval"),
        ({"namespace": "not-a-uuid"}, "namespace must be a UUID"),
    ],
    ids=[
        "url",
        "enabled-without-url",
        "key",
        "types",
        "categories",
        "distribution",
        "interval",
        "namespace",
    ],
)
def test_validation(doc: dict[str, object], message: str) -> None:
    with pytest.raises(MispSettingsError, match=message):
        MispSettings.from_dict(doc)


def test_text_typed_into_the_form_is_stripped() -> None:
    assert MispSettings.from_dict({"url": " https://misp.example\n"}).url == "https://misp.example"


def test_every_setting_is_declared_with_help() -> None:
    from dataclasses import fields

    assert [s.name for s in SETTINGS] == [f.name for f in fields(MispSettings)]
    assert all(s.help.endswith(".") for s in SETTINGS)
    doc = (Path(__file__).resolve().parents[3] / "docs" / "misp.md").read_text(encoding="utf-8")
    missing = [s.name for s in SETTINGS if f"`{s.name}`" not in doc]
    assert missing == []


def test_api_key_is_encrypted_at_rest_and_never_public(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SettingsStore(tmp_path / "misp")
    settings = MispSettings.from_dict(
        {"enabled": True, "url": "https://misp.example.org", "api_key": KEY}
    ).with_namespace()
    store.save(settings)
    on_disk = (tmp_path / "misp" / "settings.json").read_text()
    assert KEY not in on_disk and json.loads(on_disk)["api_key_encrypted"]
    # The key-encryption key is kept apart from the ciphertext, read-only, in a private folder.
    key_file = tmp_path / "keys" / "misp.key"
    assert store.key_path == key_file and sorted(os.listdir(tmp_path / "misp")) == ["settings.json"]
    assert os.stat(key_file).st_mode & 0o777 == 0o400
    assert os.stat(key_file.parent).st_mode & 0o777 == 0o700
    loaded = SettingsStore(tmp_path / "misp").load()
    assert loaded == settings and loaded.api_key == KEY
    public = loaded.to_public_dict()
    assert "api_key" not in public and public["api_key_set"] is True
    assert KEY not in repr(loaded)
    key_file.unlink()
    key_file.write_bytes(b"lQ8Fq2oZ7s8yJXGd7mT6c0C7rUe9a1wO8nY2vKp3sB4=")
    reloaded = SettingsStore(tmp_path / "misp").load()  # a lost key: no key, the rest kept
    assert reloaded.api_key == "" and reloaded.url == settings.url
    assert "cannot be decrypted" in caplog.text


def test_an_earlier_install_key_file_is_moved_apart(tmp_path: Path) -> None:
    """The earlier layout kept `secret.key` (0600) beside settings.json: it is moved."""
    from cryptography.fernet import Fernet

    root = tmp_path / "misp"
    root.mkdir()
    legacy = Fernet.generate_key()
    (root / "secret.key").write_bytes(legacy)
    os.chmod(root / "secret.key", 0o600)
    doc = MispSettings(url="https://misp.example.org").with_namespace().to_dict()
    doc.pop("api_key")
    doc["api_key_encrypted"] = Fernet(legacy).encrypt(KEY.encode()).decode()
    (root / "settings.json").write_text(json.dumps(doc))
    loaded = SettingsStore(root).load()
    assert loaded.api_key == KEY and loaded.url == "https://misp.example.org"
    assert not (root / "secret.key").exists()
    moved = tmp_path / "keys" / "misp.key"
    assert moved.read_bytes() == legacy and os.stat(moved).st_mode & 0o777 == 0o400
    assert SettingsStore(root).load().api_key == KEY  # and stays readable
    # Instances: their keys sit in the same private folder, named after the instance.
    inst = SettingsStore(root / "instances" / "partner")
    assert inst.key_path == tmp_path / "keys" / "misp-instances-partner.key"


def test_first_load_uses_the_default_and_fixes_a_namespace(tmp_path: Path) -> None:
    default = MispSettings(url="https://misp.example.org")
    first = SettingsStore(tmp_path).load(default)
    assert first.url == default.url and first.namespace
    assert SettingsStore(tmp_path).load().namespace == first.namespace


def test_merged_keeps_the_key_unless_given() -> None:
    base = MispSettings(url="https://m.example", api_key=KEY)
    assert base.merged({"pull_interval": 60}).api_key == KEY
    assert base.merged({"api_key": ""}).api_key == ""
    assert base.merged({"ca_file": "/etc/ca.pem"}).verify == "/etc/ca.pem"


def test_config_overrides_are_the_non_default_keys() -> None:
    section = MispSettings(url="https://m.example", pull_interval=60.0)
    assert config_overrides(section) == {"url": "https://m.example", "pull_interval": 60.0}
    assert config_overrides({"enabled": True}) == {"enabled": True}
    assert config_overrides(None) == {}


def test_public_names_are_pinned() -> None:
    import appliance.misp as misp

    assert misp.__all__ == sorted(misp.__all__, key=lambda n: (not n.isupper(), n))
    assert set(misp.__all__) == {
        "SETTINGS",
        "FlushResult",
        "IocSink",
        "MemoryIocSink",
        "MispError",
        "MispRateLimited",
        "MispRejected",
        "MispServerError",
        "MispSettings",
        "MispSettingsError",
        "MispStorage",
        "MispSync",
        "MispUnavailable",
        "MispWorker",
        "PullResult",
        "PushResult",
        "SettingsStore",
        "day_event_uuid",
    }
    for name in misp.__all__:
        assert getattr(misp, name) is not None
    with pytest.raises(AttributeError):
        misp.nothing_here  # noqa: B018
