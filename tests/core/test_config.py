"""bridge.config: typed sections, error messages naming the key, secrets, lookup order."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import load_config, resolve_secret
from bridge.errors import ConfigError


def write(tmp_path: Path, text: str, name: str = "bridge.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return str(info.value)


def test_embedded_defaults_are_relative_to_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CAREBRIDGE_CONFIG", raising=False)
    config = load_config(None)
    assert config.path is None
    assert config.base_dir == tmp_path
    assert (config.server.host, config.server.port, config.server.max_body) == ("127.0.0.1", 8080, 2097152)
    assert config.store.path == tmp_path / "var" / "carebridge.db"
    assert config.store.key == f"file:{tmp_path / 'var' / 'master.key'}"
    # The console and the website chat need no secrets: they run from the start (DESIGN §12).
    assert config.enabled_channels() == ["webchat"]
    assert "embedded defaults" in config.describe()


def test_lookup_prefers_env_then_cwd_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "[server]\nport = 9001\n")
    other = write(tmp_path, "[server]\nport = 9002\n", name="other.toml")
    monkeypatch.delenv("CAREBRIDGE_CONFIG", raising=False)
    assert load_config(None).server.port == 9001
    monkeypatch.setenv("CAREBRIDGE_CONFIG", str(other))
    assert load_config(None).server.port == 9002
    assert load_config(tmp_path / "bridge.toml").server.port == 9001


def test_named_file_missing_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="nope.toml: configuration file not found"):
        load_config(tmp_path / "nope.toml")
    monkeypatch.setenv("CAREBRIDGE_CONFIG", str(tmp_path / "gone.toml"))
    with pytest.raises(ConfigError, match=r"gone.toml: configuration file not found \(from \$CAREBRIDGE_CONFIG\)"):
        load_config(None)


def test_full_file_parses_into_typed_sections(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("x")
    config = load_config(
        write(
            tmp_path,
            """
            [server]
            host = "0.0.0.0"
            port = 8443
            public_url = "https://care.example.org/"
            max_body = 1024
            shutdown_timeout = "30s"
            tls_cert = "cert.pem"
            tls_key = "/etc/key.pem"
            [logging]
            level = "DEBUG"
            [plugins]
            required = ["messenger", "whatsapp"]
            [store]
            path = "data/cb.db"
            key = "file:keys/master.key"
            synchronous = "normal"
            [security]
            session_ttl = "2h"
            login_max_attempts = 3
            lockout = "1m"
            totp_issuer = "Acme"
            [routing]
            strategy = "round_robin"
            rules_file = "config/routing.yaml"
            history_messages = 5
            decline_timeout = "90s"
            transfer_notice = true
            window_warning = "30m"
            [delivery]
            max_attempts = 3
            retry_base = "1s"
            retry_max = "1m"
            concurrency = 2
            [templates]
            file = ""
            [retention]
            closed_after_days = 0
            [sensitive]
            policy = "redact"
            """,
        )
    )
    assert config.path == tmp_path / "bridge.toml"
    assert config.server.public_url == "https://care.example.org"
    assert config.server.shutdown_timeout == 30.0
    assert config.server.tls_cert == tmp_path / "cert.pem"
    assert config.server.tls_key == Path("/etc/key.pem")
    assert config.logging.level == "debug"
    assert config.plugins.required == ("messenger", "whatsapp")
    assert config.store.path == tmp_path / "data" / "cb.db"
    assert config.store.key == f"file:{tmp_path / 'keys' / 'master.key'}"
    assert config.store.synchronous == "normal"
    assert (config.security.session_ttl, config.security.lockout) == (7200.0, 60.0)
    assert config.routing.rules_file == tmp_path / "config" / "routing.yaml"
    assert (config.routing.decline_timeout, config.routing.window_warning) == (90.0, 1800.0)
    assert config.routing.transfer_notice is True
    assert (config.delivery.retry_base, config.delivery.retry_max, config.delivery.concurrency) == (1.0, 60.0, 2)
    assert config.templates.file is None
    assert config.retention.closed_after_days == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[server]\nprot = 1\n", "server.prot: unknown key (expected one of: host, port,"),
        ("[sever]\nport = 1\n", "sever: unknown key (expected one of: server, logging,"),
        ("[server]\nport = 'x'\n", "server.port: expected an integer, got a string"),
        ("[server]\nport = true\n", "server.port: expected an integer, got a boolean"),
        ("[server]\nport = 70000\n", "server.port: expected an integer between 0 and 65535, got 70000"),
        ("[server]\nmax_body = 0\n", "server.max_body: expected an integer at least 1"),
        ("[server]\nshutdown_timeout = 'soon'\n", "server.shutdown_timeout: expected a duration"),
        ("[server]\nshutdown_timeout = [1]\n", "server.shutdown_timeout: expected a duration"),
        ("[server]\npublic_url = 'care.example.org'\n", "server.public_url: expected an http(s) URL"),
        ("[server]\ntls_cert = 'c.pem'\n", "server.tls_key: required when the other"),
        ("[server]\nhost = 5\n", "server.host: expected a string, got an integer"),
        ("server = 1\n", "server: expected a table, got an integer"),
        ("[logging]\nlevel = 'loud'\n", "logging.level: expected one of debug, info, warning, error, critical"),
        ("[plugins]\nrequired = 'messenger'\n", "plugins.required: expected an array of strings"),
        ("[plugins]\nrequired = ['ok', 3]\n", "plugins.required[1]: expected a non-empty string"),
        ("[store]\nkey = 'master.key'\n", "store.key: expected 'file:PATH', 'env:NAME' or 'credential:NAME'"),
        ("[store]\npath = ''\n", "store.path: expected a path, got an empty string"),
        ("[store]\nsynchronous = 'sometimes'\n", "store.synchronous: expected one of off, normal, full, extra"),
        ("[security]\nlogin_max_attempts = 0\n", "security.login_max_attempts: expected an integer at least 1"),
        ("[routing]\ntransfer_notice = 'yes'\n", "routing.transfer_notice: expected true or false, got a string"),
        ("[routing]\nhistory_messages = -1\n", "routing.history_messages: expected an integer at least 0"),
        ("[delivery]\nretry_base = '1m'\nretry_max = '10s'\n", "delivery.retry_max: must not be shorter"),
        ("[delivery]\nwhatever = 1\n", "delivery.whatever: unknown key (expected one of: max_attempts,"),
        ("[sensitive]\npolicy = 'shout'\n", "sensitive.policy: expected one of redact, block, allow"),
        ("channels = 3\n", "channels: expected a table of [channels.<name>] sections"),
        ("[channels]\nMessenger = {}\n", "channels.Messenger: channel names are lower-case"),
        ("[channels]\nmessenger = 1\n", "channels.messenger: expected a table, got an integer"),
        ("[channels.messenger]\nenabled = 'no'\n", "channels.messenger.enabled: expected true or false"),
    ],
)
def test_errors_name_the_key_path_and_expectation(tmp_path: Path, text: str, message: str) -> None:
    assert message in error_of(tmp_path, text)


def test_invalid_toml_names_the_file_and_position(tmp_path: Path) -> None:
    message = error_of(tmp_path, "[server\nport = 1\n")
    assert "bridge.toml: invalid TOML" in message and "line 1" in message


def test_channel_sections_are_raw_with_enabled_and_secrets_resolved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CB_TEST_TOKEN", "tok-123")
    (tmp_path / "secret.txt").write_text("s3cret\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "verify").write_text("vt")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    config = load_config(
        write(
            tmp_path,
            """
            [channels.messenger]
            page_access_token = "env:CB_TEST_TOKEN"
            app_secret = "file:secret.txt"
            verify_token = "credential:verify"
            graph_url = "http://127.0.0.1:1/v25.0"
            nested = { list = ["env:CB_TEST_TOKEN"] }
            [channels.whatsapp]
            enabled = false
            access_token = "env:CB_NOT_SET_ANYWHERE"
            """,
        )
    )
    messenger = config.channels["messenger"]
    assert messenger["enabled"] is True
    assert messenger["page_access_token"] == "tok-123"
    assert messenger["app_secret"] == "s3cret"
    assert messenger["verify_token"] == "vt"
    assert messenger["nested"] == {"list": ["tok-123"]}
    # A disabled channel's secrets are not needed on this host, so not resolved.
    assert config.channels["whatsapp"] == {"enabled": False, "access_token": "env:CB_NOT_SET_ANYWHERE"}
    assert config.enabled_channels() == ["messenger"]


def test_secret_errors_name_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CB_MISSING", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    assert "channels.messenger.app_secret: environment variable CB_MISSING is not set" in error_of(
        tmp_path, "[channels.messenger]\napp_secret = 'env:CB_MISSING'\n"
    )
    assert "channels.messenger.app_secret: file" in error_of(
        tmp_path, "[channels.messenger]\napp_secret = 'file:none.txt'\n"
    )
    assert "needs $CREDENTIALS_DIRECTORY" in error_of(tmp_path, "[channels.messenger]\napp_secret = 'credential:x'\n")
    (tmp_path / "empty.txt").write_text("\n")
    assert "server.host: file:empty.txt is empty" in error_of(tmp_path, "[server]\nhost = 'file:empty.txt'\n")
    with pytest.raises(ConfigError, match="k: 'env:' needs a name"):
        resolve_secret("env:", "k", tmp_path)


def test_resolve_secret_leaves_plain_strings_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_secret("https://graph.facebook.com/v25.0", "k", tmp_path) == "https://graph.facebook.com/v25.0"
    assert resolve_secret("plain", "k", tmp_path) == "plain"
    creds = tmp_path / "c"
    creds.mkdir()
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    with pytest.raises(ConfigError, match="must not contain '/'"):
        resolve_secret("credential:../etc/passwd", "k", tmp_path)


def test_store_key_env_and_credential_references_are_kept_as_text(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "[store]\nkey = 'env:CB_KEY'\n")).store.key == "env:CB_KEY"
    assert load_config(write(tmp_path, "[store]\nkey = 'credential:master.key'\n")).store.key == "credential:master.key"


def test_example_bridge_toml_is_the_init_template_and_both_load(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    example = (root / "bridge.toml").read_text(encoding="utf-8")
    template = (root / "bridge" / "defaults" / "bridge.toml").read_text(encoding="utf-8")
    # Identical except the key location: init puts master.key beside the file.
    assert example.replace('key = "file:var/master.key" #', 'key = "file:master.key"     #') == template
    config = load_config(root / "bridge.toml")
    assert config.store.key == f"file:{root / 'var' / 'master.key'}"
    # Platform channels are present but off; the website chat needs no secret and is on (DESIGN §12).
    assert set(config.channels) == {
        "messenger",
        "whatsapp",
        "email",
        "instagram",
        "telegram",
        "webchat",
    } and config.enabled_channels() == ["webchat"]
    # Every documented key of the core sections is present in the example.
    for section in (
        "server",
        "logging",
        "plugins",
        "store",
        "security",
        "routing",
        "delivery",
        "templates",
        "retention",
        "sensitive",
    ):
        assert f"[{section}]" in example


def test_channel_file_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            """
            [channels.email]
            smtp_ca_file = "certs/ca.pem"
            [channels.other]
            ca_file = "/etc/ssl/ca.pem"
            """,
        )
    )
    assert config.channels["email"]["smtp_ca_file"] == str(tmp_path / "certs" / "ca.pem")
    assert config.channels["other"]["ca_file"] == "/etc/ssl/ca.pem"


def test_edge_limits_and_admin_keys_have_defaults(tmp_path: Path) -> None:
    server = load_config(write(tmp_path, "")).server
    assert (server.header_timeout, server.body_timeout) == (10.0, 10.0)
    assert server.max_connections_per_address == 100
    assert server.max_inflight_body_bytes == 64 * 1024 * 1024
    assert server.max_inflight_body_bytes_per_address == 16 * 1024 * 1024
    assert server.admin_listen is None and server.admin_token == ""


def test_edge_limits_and_admin_keys_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CB_ADMIN", "s3cret-admin")
    server = load_config(
        write(
            tmp_path,
            """
            [server]
            header_timeout = "2s"
            body_timeout = "500ms"
            max_connections_per_address = 0
            max_inflight_body_bytes = 4194304
            max_inflight_body_bytes_per_address = 2097152
            admin_listen = "[::1]:9090"
            admin_token = "env:CB_ADMIN"
            """,
        )
    ).server
    assert (server.header_timeout, server.body_timeout) == (2.0, 0.5)
    assert server.max_connections_per_address == 0
    assert (server.max_inflight_body_bytes, server.max_inflight_body_bytes_per_address) == (4194304, 2097152)
    assert server.admin_listen == ("::1", 9090) and server.admin_token == "s3cret-admin"
    assert "s3cret-admin" not in repr(server), "the admin token is a secret"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('header_timeout = "0s"', "server.header_timeout: expected a duration longer than 0"),
        ("body_timeout = 0", "server.body_timeout: expected a duration longer than 0"),
        ('body_timeout = "soon"', "server.body_timeout: expected a duration"),
        ("max_connections_per_address = -1", "server.max_connections_per_address: expected an integer at least 0"),
        ("max_inflight_body_bytes = 1000", "server.max_inflight_body_bytes: must be at least server.max_body"),
        (
            "max_inflight_body_bytes_per_address = 1000",
            "server.max_inflight_body_bytes_per_address: must be at least server.max_body",
        ),
        ('admin_listen = "9090"', "server.admin_listen: expected HOST:PORT"),
        ('admin_listen = "127.0.0.1:70000"', "server.admin_listen: expected HOST:PORT"),
        ('admin_listen = "127.0.0.1:8080"', "server.admin_listen: must differ from server.host:server.port"),
        ("admin_listen = 9090", "server.admin_listen: expected a string"),
        ('admin_token = "env:CB_TEST_NO_SUCH_VARIABLE"', "server.admin_token: environment variable"),
    ],
)
def test_bad_edge_and_admin_keys_are_named(tmp_path: Path, line: str, message: str) -> None:
    assert message in error_of(tmp_path, f"[server]\n{line}\n")
