import ipaddress

import pytest

from accounts import errors
from ipn import delivery
from ipn import services as ipn_services
from ipn.lib import safehttp
from ipn.models import IpnAttempt, IpnEvent
from messaging.services import callbacks
from tests.ipn.conftest import make_message

# Addresses in the manner of Svix's `is_allowed` table, plus our own (loopback, private and link-local ranges).
REFUSED = [
    "127.0.0.1",
    "127.255.255.254",
    "10.0.0.1",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # carrier-grade NAT
    "0.0.0.0",
    "255.255.255.255",
    "224.0.0.1",
    "239.255.255.250",
    "192.0.0.1",
    "192.0.2.1",
    "198.18.0.1",
    "198.51.100.1",
    "203.0.113.1",
    "240.0.0.1",
    "::1",
    "::",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "ff02::1",
    "2001:db8::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1; Python calls it global
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "2002:a00:1::",  # 6to4 of 10.0.0.1; Python calls it global
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "64:ff9b:1::1",
    "2001::1",  # Teredo
    # IANA special-purpose blocks that Python's ipaddress calls global (issue 17).
    "192.0.0.9",
    "192.0.0.10",
    "192.88.99.2",
    "3fff::1",
    "fec0::1",  # deprecated site-local: outside 2000::/3
    "4000::1",
]
ALLOWED = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2001:4860:4860::8888", "2606:4700:4700::1111", "64:ff9b::808:808"]


@pytest.mark.parametrize("address", REFUSED)
def test_it_refuses_non_public_addresses(address):
    assert safehttp.refusal_reason(safehttp.canonical_address(address)) is not None


def test_every_block_of_the_iana_registries_that_is_not_globally_reachable_is_refused():
    blocks = [
        block
        for name in ("iana-ipv4-special-registry-1.csv", "iana-ipv6-special-registry-1.csv")
        for block in safehttp.read_registry(safehttp.REGISTRY_DIR / name)
    ]
    assert len(blocks) > 50  # both tables were read, blocks split out of shared cells
    for block in blocks:
        if block.globally_reachable:
            continue
        for address in (block.network[0], block.network[-1]):
            assert safehttp.refusal_reason(address) is not None, f"{address} ({block.name})"


@pytest.mark.parametrize("address", ALLOWED)
def test_it_allows_public_addresses(address):
    assert safehttp.refusal_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://localhost/",
        "http://[::1]:8080/",
        "http://[::ffff:127.0.0.1]/",
        "http://[64:ff9b::a00:1]/",
        "http://[2002:a00:1::]/",
        "http://100.64.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0:8000/",
        "http://2130706433/",  # 127.0.0.1 as one number
        "http://0x7f.1/",  # 127.0.0.1 in hex, short form
        "http://017700000001/",  # 127.0.0.1 in octal
        "http://127.1/",
        "ftp://8.8.8.8/",
        "file:///etc/passwd",
        "gopher://8.8.8.8/",
        "javascript:alert(1)",
        "not a url",
    ],
)
def test_it_refuses_these_urls(url):
    with pytest.raises(safehttp.AddressRefused):
        safehttp.check_url(url, allow_private=False)


def test_it_accepts_a_public_address_url():
    safehttp.check_url("https://8.8.8.8/hook", allow_private=False)


def test_the_operator_setting_lifts_the_address_block_but_not_the_scheme_rule():
    safehttp.check_url("http://127.0.0.1:9/", allow_private=True)
    with pytest.raises(safehttp.AddressRefused):
        safehttp.check_url("ftp://127.0.0.1/", allow_private=True)


def test_a_host_with_one_bad_answer_among_good_ones_is_refused_before_any_connection():
    calls = []

    def rebinding(host, port):
        calls.append(host)
        return ["93.184.216.34", "127.0.0.1"]

    with pytest.raises(safehttp.AddressRefused, match=r"127\.0\.0\.1"):
        safehttp.post(
            "http://ipn.example.test/hook",
            content=b"{}",
            headers={},
            timeout=2,
            max_response_bytes=100,
            allow_private=False,
            resolver=rebinding,
        )
    assert calls == ["ipn.example.test"]


def test_the_connection_goes_to_the_resolved_address_and_keeps_the_host_name(receiver):
    """Resolved once: a resolver that would answer differently the second time is never asked again."""
    port = receiver.server.server_address[1]
    answers = [["127.0.0.1"], ["203.0.113.9"]]

    def resolver(host, port_):
        return answers.pop(0)

    answer = safehttp.post(
        f"http://ipn.example.test:{port}/hook",
        content=b"{}",
        headers={"Host": "evil.example"},
        timeout=2,
        max_response_bytes=100,
        allow_private=True,
        resolver=resolver,
    )
    assert answer.status_code == 200
    assert len(answers) == 1
    got = receiver.wait_for(1)[0]
    assert got.headers["host"] == f"ipn.example.test:{port}"


def test_saving_a_private_url_is_refused_unless_the_operator_allows_it(alice, settings):
    settings.IPN_ALLOW_PRIVATE_NETWORKS = False
    with pytest.raises(errors.InvalidParameter, match="not allowed"):
        ipn_services.update_endpoint(account=alice, url="http://10.1.2.3/ipn", enabled=True)
    with pytest.raises(errors.InvalidParameter):
        ipn_services.update_endpoint(account=alice, url="file:///etc/passwd")
    settings.IPN_ALLOW_PRIVATE_NETWORKS = True
    assert ipn_services.update_endpoint(account=alice, url="http://10.1.2.3/ipn").url == "http://10.1.2.3/ipn"


def test_sending_to_a_private_address_is_refused_at_send_time_as_a_permanent_failure(
    alice, alice_list, endpoint, receiver, settings
):
    message = make_message(account=alice, phone_list=alice_list)
    event = callbacks.record_message_event(message=message, status="sent")
    assert event is not None
    settings.IPN_ALLOW_PRIVATE_NETWORKS = False  # the URL was saved while it was allowed
    delivery.deliver_one_due_event()
    event.refresh_from_db()
    attempt = event.attempts_log.get()
    assert attempt.outcome == IpnAttempt.Outcome.PERMANENT
    assert attempt.error.startswith("refused:") and "127.0.0.1" in attempt.error
    assert event.status == IpnEvent.Status.FAILED
    assert receiver.requests == []


@pytest.fixture
def tls_receiver(tmp_path, monkeypatch):
    """An HTTPS receiver on 127.0.0.1 with a certificate for `ipn.example.test` only, which
    our client trusts; records the SNI name, the Host header and each new connection."""
    import http.server
    import ssl
    import subprocess
    import threading

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    openssl = "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=ipn.example.test"
    subprocess.run(
        ["openssl", *openssl.split(), "-keyout", key, "-out", cert, "-addext", "subjectAltName=DNS:ipn.example.test"],
        check=True,
        capture_output=True,
    )
    seen: dict[str, list[str]] = {"sni": [], "host": [], "connections": []}
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    server_tls.sni_callback = lambda sock, name, context: seen["sni"].append(name)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            seen["connections"].append(str(self.client_address))
            super().setup()

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            seen["host"].append(self.headers["Host"])
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.socket = server_tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    client_tls = ssl.create_default_context(cafile=str(cert))
    monkeypatch.setattr(safehttp, "_tls_context", lambda: client_tls)
    yield server.server_address[1], seen
    server.shutdown()
    server.server_close()


def _post_tls(url):
    return safehttp.post(
        url,
        content=b"{}",
        headers={},
        timeout=5,
        max_response_bytes=100,
        allow_private=True,
        resolver=lambda host, port: ["127.0.0.1"],
    )


def test_https_goes_to_the_checked_address_with_the_urls_name_as_sni_and_for_the_certificate(tls_receiver):
    port, seen = tls_receiver
    for _ in range(2):
        answer = _post_tls(f"https://ipn.example.test:{port}/hook")
        assert (answer.status_code, answer.body) == (200, b"ok")
    assert seen["sni"] == ["ipn.example.test"]
    assert seen["host"] == [f"ipn.example.test:{port}"] * 2
    assert len(seen["connections"]) == 1  # kept alive between the two


def test_https_to_a_name_the_certificate_does_not_carry_is_refused(tls_receiver):
    port, _seen = tls_receiver
    with pytest.raises(safehttp.ConnectionFailed, match="certificate"):
        _post_tls(f"https://other.example.test:{port}/hook")
