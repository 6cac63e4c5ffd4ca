"""Where the Python clients find the server and the secret (luxdb.settings; README,
"Connecting: address and secret"): the rules and their errors without a server, then real
connections that take the address from LUXDB_HOST / LUXDB_PORT and the secret from
LUXDB_SECRET_FILE, and the examples run with nothing but the environment."""

import os
import pathlib
import subprocess
import sys

import pytest

import luxdb.client
import luxdb.sync_client
from luxdb import settings
from luxdb.settings import Address, resolve_address, resolve_secret
from luxdb_testing import CONNECTION_VARIABLES, TEST_SECRET, server_environment

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def clean_environment(monkeypatch, client_environment):
    """No LUXDB_ADDRESS, LUXDB_HOST, ... in os.environ: each test sets what it needs."""
    for name in CONNECTION_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("environ, expected", [
    ({}, ("127.0.0.1", 8484)),
    ({"LUXDB_ADDRESS": "db.example:9000"}, ("db.example", 9000)),
    ({"LUXDB_ADDRESS": "[::1]:9000"}, ("::1", 9000)),
    ({"LUXDB_HOST": "db.example"}, ("db.example", 8484)),
    ({"LUXDB_PORT": "9001"}, ("127.0.0.1", 9001)),
    ({"LUXDB_HOST": "::1", "LUXDB_PORT": "7"}, ("::1", 7)),
    ({"LUXDB_HOST": "[::1]"}, ("::1", 8484)),
    ({"LUXDB_ADDRESS": "", "LUXDB_HOST": "db"}, ("db", 8484)),  # empty counts as unset
])
def test_address_from_the_environment(environ, expected):
    assert resolve_address(environ=environ) == Address(*expected)


def test_explicit_address_wins_and_the_environment_fills_in_the_rest():
    environ = {"LUXDB_ADDRESS": "env:1111"}
    assert resolve_address("h", 2, environ=environ) == Address("h", 2)
    assert resolve_address(port=2, environ=environ) == Address("env", 2)
    assert resolve_address("h", environ=environ) == Address("h", 1111)
    assert resolve_address(address="[::1]:3", environ=environ) == Address("::1", 3)
    assert resolve_address(port="4", environ={"LUXDB_HOST": "e"}) == Address("e", 4)
    # Both parts given: the environment is not read, not even a broken one.
    assert resolve_address("h", 5, environ={"LUXDB_ADDRESS": "x", "LUXDB_HOST": "y"}) == \
        Address("h", 5)
    assert str(Address("::1", 8484)) == "[::1]:8484"
    assert str(Address("db", 1)) == "db:1"


@pytest.mark.parametrize("arguments, environ, message", [
    ({}, {"LUXDB_ADDRESS": "db:1", "LUXDB_HOST": "h"},
     "LUXDB_ADDRESS='db:1' and LUXDB_HOST contradict"),
    ({}, {"LUXDB_ADDRESS": "db:1", "LUXDB_PORT": "2"},
     "LUXDB_ADDRESS='db:1' and LUXDB_PORT contradict"),
    ({"port": 3}, {"LUXDB_ADDRESS": "db:1", "LUXDB_HOST": "h", "LUXDB_PORT": "2"},
     "LUXDB_ADDRESS='db:1' and LUXDB_HOST and LUXDB_PORT contradict"),
    ({}, {"LUXDB_ADDRESS": "db"}, "LUXDB_ADDRESS='db' has no port"),
    ({}, {"LUXDB_ADDRESS": "db:"}, "LUXDB_ADDRESS='db:' has no port"),
    ({}, {"LUXDB_ADDRESS": "::1"}, "LUXDB_ADDRESS='::1' has no port"),
    ({}, {"LUXDB_ADDRESS": "[::1]"}, "LUXDB_ADDRESS='[::1]' has no port"),
    ({}, {"LUXDB_ADDRESS": "db:0"}, "LUXDB_ADDRESS='db:0' is not \"host:port\""),
    ({}, {"LUXDB_ADDRESS": ":8484"}, "LUXDB_ADDRESS=':8484' is not \"host:port\""),
    ({}, {"LUXDB_PORT": "0"}, "LUXDB_PORT='0' is not a port"),
    ({}, {"LUXDB_PORT": "65536"}, "LUXDB_PORT='65536' is not a port"),
    ({}, {"LUXDB_PORT": "http"}, "LUXDB_PORT='http' is not a port"),
    ({}, {"LUXDB_HOST": "db:8484"}, "LUXDB_HOST='db:8484' is not a host name or address"),
    ({"port": 70000}, {}, "port=70000 is not a port"),
    ({"port": -1}, {}, "port=-1 is not a port"),
    ({"host": "127.0.0.1:8484"}, {}, "host='127.0.0.1:8484' is not a host name or address"),
    ({"address": "db"}, {}, "address='db' has no port"),
    ({"address": "db:1", "port": 2}, {}, "address='db:1' and host/port contradict"),
])
def test_bad_address_is_a_value_error_naming_it(arguments, environ, message):
    with pytest.raises(ValueError) as info:
        resolve_address(**arguments, environ=environ)
    assert message in str(info.value)


def test_secret_rules(tmp_path):
    file = tmp_path / "secret"
    file.write_text("  from-file\n")
    env_file = tmp_path / "env-secret"
    env_file.write_bytes(b"from-env-file\r\n")
    assert resolve_secret("given", environ={"LUXDB_SECRET": "env"}) == "given"
    assert resolve_secret(secret_file=file, environ={"LUXDB_SECRET": "env"}) == b"from-file"
    assert resolve_secret(environ={"LUXDB_SECRET": "env"}) == "env"
    assert resolve_secret(environ={"LUXDB_SECRET_FILE": str(env_file)}) == b"from-env-file"
    assert resolve_secret(environ={"LUXDB_SECRET": "", "LUXDB_SECRET_FILE": str(env_file)}) \
        == b"from-env-file"
    assert resolve_secret(insecure=True, environ={}) is None
    # insecure=True does not drop a secret that is there (an --insecure server ignores it).
    assert resolve_secret(insecure=True, environ={"LUXDB_SECRET": "env"}) == "env"


def test_secret_errors_name_their_source(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("\n \n")
    missing = tmp_path / "missing"
    big = tmp_path / "big"
    big.write_bytes(b"x" * (settings.MAX_SECRET_FILE_BYTES + 1))
    cases = [
        ({}, {}, "no secret: pass secret= or secret_file=, or set LUXDB_SECRET or "
                 "LUXDB_SECRET_FILE (or pass insecure=True"),
        ({}, {"LUXDB_SECRET": "a", "LUXDB_SECRET_FILE": str(empty)},
         "LUXDB_SECRET and LUXDB_SECRET_FILE are both set"),
        ({"secret_file": missing}, {}, f"cannot read the secret file secret_file='{missing}'"),
        ({}, {"LUXDB_SECRET_FILE": str(missing)},
         f"cannot read the secret file LUXDB_SECRET_FILE='{missing}': No such file"),
        ({"secret_file": tmp_path}, {}, f"cannot read the secret file secret_file='{tmp_path}'"),
        ({"secret_file": empty}, {}, f"the secret file secret_file='{empty}' is empty"),
        ({}, {"LUXDB_SECRET_FILE": str(empty)},
         f"the secret file LUXDB_SECRET_FILE='{empty}' is empty"),
        ({"secret_file": big}, {}, f"secret_file='{big}' is larger than 65536 bytes"),
        ({"secret": "s", "secret_file": empty}, {}, "secret and secret_file="),
        ({"secret": ""}, {}, "secret is empty"),
    ]
    for arguments, environ, message in cases:
        with pytest.raises(ValueError) as info:
            resolve_secret(**arguments, environ=environ)
        assert message in str(info.value), (arguments, environ)


@pytest.mark.parametrize("make", [luxdb.sync_client.SyncClient, luxdb.client.Client],
                         ids=["SyncClient", "Client"])
def test_clients_resolve_before_any_call(make, clean_environment, tmp_path):
    clean_environment.setenv("LUXDB_ADDRESS", "db.example:9000")
    clean_environment.setenv("LUXDB_SECRET", "s")
    client = make()
    assert (client.host, client.port, client.address) == ("db.example", 9000, "db.example:9000")
    assert make(address="[::1]:7").address == "[::1]:7"
    assert make("::1", 7, "s").address == "[::1]:7"
    clean_environment.setenv("LUXDB_PORT", "1")
    with pytest.raises(ValueError, match="LUXDB_ADDRESS='db.example:9000' and LUXDB_PORT"):
        make()
    assert make("h", 2).address == "h:2"  # all explicit: the contradiction is not read
    clean_environment.delenv("LUXDB_SECRET")
    with pytest.raises(ValueError, match="no secret"):
        make("h", 2)
    assert make("h", 2, insecure=True).address == "h:2"
    with pytest.raises(ValueError, match="cannot read the secret file secret_file="):
        make("h", 2, secret_file=tmp_path / "missing")


def test_sync_client_connects_through_host_port_and_secret_file(luxdb_server,
                                                                clean_environment, tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text(TEST_SECRET + "\n")
    clean_environment.setenv("LUXDB_HOST", "127.0.0.1")
    clean_environment.setenv("LUXDB_PORT", str(luxdb_server.port))
    clean_environment.setenv("LUXDB_SECRET_FILE", str(secret_file))
    with luxdb.sync_client.connect() as client:
        assert client.address == f"127.0.0.1:{luxdb_server.port}"
        assert client.create_index("from-env", "l2", 2) is True
    # The file's secret is the one the server has: a different file is refused at connect.
    secret_file.write_text("not-the-secret\n")
    with pytest.raises(luxdb.exceptions.AuthenticationError):
        with luxdb.sync_client.connect():
            pytest.fail("connected with the wrong secret file")


@pytest.mark.asyncio
async def test_async_client_connects_through_address_and_secret_file(luxdb_server,
                                                                     clean_environment,
                                                                     tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text(TEST_SECRET)
    clean_environment.setenv("LUXDB_ADDRESS", luxdb_server.address)
    async with luxdb.client.connect(secret_file=secret_file) as client:
        assert await client.create_index("async-env", "l2", 2) is True
    clean_environment.setenv("LUXDB_SECRET", TEST_SECRET)
    clean_environment.setenv("LUXDB_ADDRESS", "127.0.0.1:1")  # an explicit port wins
    async with luxdb.client.connect(port=luxdb_server.port) as client:
        assert await client.get_indexes() == ["async-env"]


@pytest.mark.parametrize("example", ["python_client.py", "quickstart.py"])
def test_examples_take_the_environments_address_and_secret(luxdb_server, tmp_path, example):
    secret_file = tmp_path / "secret"
    secret_file.write_text(TEST_SECRET + "\n")
    env = {**server_environment(), "LUXDB_HOST": "127.0.0.1",
           "LUXDB_PORT": str(luxdb_server.port), "LUXDB_SECRET_FILE": str(secret_file)}
    result = subprocess.run([sys.executable, str(EXAMPLES / example)], capture_output=True,
                            text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert "nearest" in result.stdout
    # Contradictory settings stop it before it connects, naming both variables.
    env["LUXDB_ADDRESS"] = luxdb_server.address
    result = subprocess.run([sys.executable, str(EXAMPLES / example)], capture_output=True,
                            text=True, timeout=60, env=env)
    assert result.returncode != 0
    assert "LUXDB_ADDRESS=" in result.stderr and "LUXDB_HOST and LUXDB_PORT contradict" in \
        result.stderr
    # The one argument HOST:PORT wins over the environment, which is then not read.
    env["LUXDB_PORT"] = "1"
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / example), luxdb_server.address], capture_output=True,
        text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
