"""The address guard: URL syntax, address classes, resolution, and the connect-to-checked-IP transport."""

from __future__ import annotations

import datetime
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpcore
import httpx
import pytest

from pageperfect.sources.guard import (
    MAX_URL_LENGTH,
    AllowList,
    BlockedAddress,
    GuardedTransport,
    GuardError,
    InvalidUrl,
    guarded_client,
    parse_allowed_hosts,
    resolve_checked,
    validate_url,
    why_blocked,
)

NO_ALLOW = AllowList()


# --- validate_url ------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "",
        "   ",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "ftp://example.com/",
        "gopher://example.com:70/",
        "example.com/page",
        "http://",
        "http:///path",
        "http://exa mple.com/",
        "http://example.com/a\nb",
        "http://user:secret@example.com/",
        "http://example.com:99999/",
        "http://exa%41mple.com/",
        "http://a..b/",
        "http://[fe80::1%25eth0]/",
        "http://2130706433/",  # 127.0.0.1 in decimal
        "http://0177.0.0.1/",  # 127.0.0.1 in octal
        "http://0x7f.1/",  # 127.0.0.1 in hex, short form
        "http://127.1/",
        "http://1.2.3.4.5/",
        "http://example.com/" + "a" * 10_000,
    ],
)
def test_validate_url_refuses_malformed_and_non_http_urls(url: str) -> None:
    with pytest.raises(InvalidUrl) as caught:
        validate_url(url, NO_ALLOW)
    assert caught.value.kind == "InvalidUrl"
    assert str(caught.value)


def test_long_url_message_names_the_limit() -> None:
    with pytest.raises(InvalidUrl, match=str(MAX_URL_LENGTH)):
        validate_url("https://example.com/" + "x" * 10_000, NO_ALLOW)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/", "loopback"),
        ("http://10.0.0.1/", "private"),
        ("http://172.16.5.4/", "private"),
        ("http://192.168.1.1:8080/admin", "private"),
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://100.100.100.200/", "metadata"),
        ("http://[fd00:ec2::254]/", "metadata"),
        ("http://169.254.1.1/", "link-local"),
        ("http://100.64.0.1/", "carrier-grade NAT"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://[::1]/", "loopback"),
        ("http://[::]/", "unspecified"),
        ("http://[::ffff:127.0.0.1]/", "IPv4-mapped form of 127.0.0.1"),
        ("http://[::ffff:10.0.0.1]/", "IPv4-mapped form of 10.0.0.1"),
        ("http://[2002:7f00:1::]/", "6to4 form of 127.0.0.1"),
        ("http://[2002:a9fe:a9fe::]/", "6to4 form of 169.254.169.254"),
        ("http://[64:ff9b::a00:1]/", "NAT64 form of 10.0.0.1"),
        ("http://[::127.0.0.1]/", "IPv4-compatible"),
        ("http://[fe80::1]/", "link-local"),
        ("http://[fc00::1]/", "private"),
    ],
)
def test_validate_url_blocks_literal_internal_addresses(url: str, reason: str) -> None:
    with pytest.raises(BlockedAddress) as caught:
        validate_url(url, NO_ALLOW)
    assert caught.value.kind == "BlockedAddress"
    message = str(caught.value)
    assert reason in message
    assert "PAGEPERFECT_ALLOWED_HOSTS" in message


def test_blocked_message_says_what_and_why() -> None:
    with pytest.raises(BlockedAddress) as caught:
        validate_url("http://10.0.0.1/", NO_ALLOW)
    assert str(caught.value) == (
        "http://10.0.0.1/ points to 10.0.0.1, a private address; set PAGEPERFECT_ALLOWED_HOSTS to allow it"
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://bücher.example/", "http://xn--bcher-kva.example/"),
        ("HTTP://Example.COM:80/Path?q=1#section", "http://example.com/Path?q=1"),
        ("https://example.com:443", "https://example.com/"),
        ("https://example.com:8443/a", "https://example.com:8443/a"),
        ("http://example.com?x=1", "http://example.com/?x=1"),
        ("  https://example.com/café  ", "https://example.com/caf%C3%A9"),
        ("http://93.184.215.14/", "http://93.184.215.14/"),
        ("http://[2606:4700::1111]/x", "http://[2606:4700::1111]/x"),
    ],
)
def test_validate_url_normalizes(url: str, expected: str) -> None:
    assert validate_url(url, NO_ALLOW) == expected


def test_allow_list_opens_literal_addresses_in_its_networks() -> None:
    allow = parse_allowed_hosts("10.0.0.0/8,::1")
    assert validate_url("http://10.1.2.3/page", allow) == "http://10.1.2.3/page"
    assert validate_url("http://[::1]:8000/", allow) == "http://[::1]:8000/"
    with pytest.raises(BlockedAddress):
        validate_url("http://192.168.0.1/", allow)


# --- address classes and the allow list ------------------------------------------------


@pytest.mark.parametrize("ip", ["8.8.8.8", "93.184.215.14", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"])
def test_public_addresses_pass(ip: str) -> None:
    assert why_blocked(ip) is None


def test_teredo_address_is_judged_by_its_embedded_client() -> None:
    # Teredo client 192.0.2.45 (a documentation address), server 65.54.227.120.
    reason = why_blocked("2001:0:4136:e378:8000:63bf:3fff:fdd2")
    assert reason is not None and "Teredo form of 192.0.2.45" in reason


def test_parse_allowed_hosts_reads_names_addresses_and_networks() -> None:
    allow = parse_allowed_hosts(" localhost, 127.0.0.1 ,10.0.0.0/8,::1,Bücher.Example., ")
    assert allow.allows_host("LOCALHOST")
    assert allow.allows_host("xn--bcher-kva.example")
    assert allow.allows_host("bücher.example")
    assert not allow.allows_host("example.com")
    assert allow.allows_ip("127.0.0.1")
    assert allow.allows_ip("::ffff:127.0.0.1")
    assert allow.allows_ip("10.200.3.4")
    assert allow.allows_ip("::1")
    assert not allow.allows_ip("127.0.0.2")
    assert not allow.allows_ip("192.168.1.1")


@pytest.mark.parametrize("value", [None, "", " , "])
def test_empty_allow_list_allows_nothing(value: str | None) -> None:
    allow = parse_allowed_hosts(value)
    assert not allow
    assert not allow.allows_host("localhost")
    assert not allow.allows_ip("127.0.0.1")


@pytest.mark.parametrize("value", ["10.0.0.0/33", "bad host!", "fe80::zz"])
def test_bad_allow_list_entries_fail_loudly(value: str) -> None:
    with pytest.raises(ValueError, match="PAGEPERFECT_ALLOWED_HOSTS"):
        parse_allowed_hosts(value)


# --- resolve_checked -----------------------------------------------------------------


@pytest.mark.parametrize("host", ["2130706433", "0177.0.0.1", "0x7f.1", "0x7f000001", "127.1"])
async def test_resolver_normalizes_numeric_ipv4_forms_and_they_are_blocked(host: str) -> None:
    # validate_url refuses these spellings; if one reaches the resolver anyway,
    # the resolver turns it into 127.0.0.1 and the address check catches it.
    with pytest.raises(BlockedAddress, match="127.0.0.1, a loopback address"):
        await resolve_checked(host, 80, NO_ALLOW)


async def test_host_name_resolving_to_loopback_is_blocked() -> None:
    with pytest.raises(BlockedAddress, match="localhost resolves to 127.0.0.1, a loopback address"):
        await resolve_checked("localhost", 80, NO_ALLOW)


@pytest.mark.parametrize("allowed", ["localhost", "127.0.0.1", "127.0.0.0/8"])
async def test_allow_list_opens_a_host_by_name_or_address(allowed: str) -> None:
    addresses = await resolve_checked("localhost", 80, parse_allowed_hosts(allowed))
    assert "127.0.0.1" in addresses


async def test_literal_addresses_resolve_to_themselves() -> None:
    assert await resolve_checked("93.184.215.14", 443, NO_ALLOW) == ["93.184.215.14"]
    with pytest.raises(BlockedAddress, match="::1 is a loopback address"):
        await resolve_checked("::1", 443, NO_ALLOW)
    with pytest.raises(BlockedAddress, match="metadata"):
        await resolve_checked("169.254.169.254", 80, NO_ALLOW)


# --- the guarded transport -----------------------------------------------------------


class _EchoHostHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = (self.headers.get("Host") or "").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def echo_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHostHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


class _RecordingBackend(httpcore.AsyncNetworkBackend):
    """Notes where connections go, then connects for real."""

    def __init__(self) -> None:
        self.inner = httpcore.AnyIOBackend()
        self.connected_to: list[str] = []

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):  # type: ignore[no-untyped-def]
        self.connected_to.append(host)
        return await self.inner.connect_tcp(
            host, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


async def test_transport_blocks_a_name_resolving_to_loopback_before_connecting(echo_port: int) -> None:
    backend = _RecordingBackend()
    async with httpx.AsyncClient(transport=GuardedTransport(NO_ALLOW, inner_backend=backend)) as client:
        with pytest.raises(BlockedAddress, match="localhost resolves to 127.0.0.1"):
            await client.get(f"http://localhost:{echo_port}/")
    assert backend.connected_to == []


async def test_transport_connects_to_the_checked_ip_and_keeps_the_host_header(echo_port: int) -> None:
    backend = _RecordingBackend()
    transport = GuardedTransport(parse_allowed_hosts("localhost"), inner_backend=backend)
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.get(f"http://localhost:{echo_port}/")
    assert response.status_code == 200
    assert response.text == f"localhost:{echo_port}"
    assert backend.connected_to == ["127.0.0.1"]


async def test_guarded_client_follows_no_redirects_and_allows_only_listed_hosts(echo_port: int) -> None:
    timeout = httpx.Timeout(2.0)
    async with guarded_client(NO_ALLOW, timeout=timeout, user_agent="TestBot/1") as client:
        assert client.follow_redirects is False
        with pytest.raises(GuardError):
            await client.get(f"http://127.0.0.1:{echo_port}/")
    async with guarded_client(parse_allowed_hosts("127.0.0.1"), timeout=timeout, user_agent="TestBot/1") as client:
        response = await client.get(f"http://127.0.0.1:{echo_port}/")
        assert response.status_code == 200
        assert response.request.headers["User-Agent"] == "TestBot/1"


def _localhost_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for the name "localhost" only, with no IP address in it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path, list[str | None]]]:
    cert_path, key_path = _localhost_certificate(tmp_path_factory.mktemp("tls"))
    server_names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    context.sni_callback = lambda _sock, name, _ctx: server_names.append(name)  # type: ignore[assignment]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHostHandler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server.server_address[1], cert_path, server_names
    server.shutdown()
    server.server_close()


async def test_tls_uses_the_host_name_for_sni_and_verification(tls_site: tuple[int, Path, list[str | None]]) -> None:
    port, cert_path, server_names = tls_site
    trust = ssl.create_default_context(cafile=str(cert_path))
    backend = _RecordingBackend()
    transport = GuardedTransport(parse_allowed_hosts("localhost"), verify=trust, inner_backend=backend)
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.get(f"https://localhost:{port}/")
    assert response.status_code == 200
    assert backend.connected_to == ["127.0.0.1"]
    assert server_names[-1] == "localhost"
    # The certificate names no IP address, so the connection verifies against the name, not the address.
    ip_transport = GuardedTransport(parse_allowed_hosts("127.0.0.1"), verify=trust)
    async with httpx.AsyncClient(transport=ip_transport) as client:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED|match"):
            await client.get(f"https://127.0.0.1:{port}/")
