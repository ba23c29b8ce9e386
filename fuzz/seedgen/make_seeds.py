#!/usr/bin/env python3
"""Writes the seed corpora of fuzz/corpus/<target>/ (run from fuzz/).

Tokens are signed with the test keys of fuzz/keys (HMAC with the fixture's
secret; RSA, RSA-PSS and ECDSA with openssl) and expire in 2100.
"""
import base64, hashlib, hmac, json, os, subprocess

SECRET = b"fuzz-secret-0123456789abcdef0123456789"
ISS = "https://idp.fuzz"
EXP = 4102444800

def b64(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

def der_to_raw(der, n=32):
    # SEQUENCE { INTEGER r, INTEGER s }
    assert der[0] == 0x30
    i = 2 if der[1] < 0x80 else 3
    out = b""
    for _ in range(2):
        assert der[i] == 0x02
        l = der[i + 1]
        v = der[i + 2:i + 2 + l].lstrip(b"\0")
        out += v.rjust(n, b"\0")
        i += 2 + l
    return out

def openssl_sign(key, msg, extra=()):
    return subprocess.run(["openssl", "dgst", "-sha256", "-sign", key, *extra],
                          input=msg, capture_output=True, check=True).stdout

def sign(alg, claims, kid=None, header_extra=None):
    h = {"alg": alg, "typ": "JWT"}
    if kid: h["kid"] = kid
    if header_extra: h.update(header_extra)
    msg = (b64(json.dumps(h, separators=(",", ":")).encode()) + "." +
           b64(json.dumps(claims, separators=(",", ":")).encode())).encode()
    if alg == "HS256":
        sig = hmac.new(SECRET, msg, hashlib.sha256).digest()
    elif alg == "HS384":
        sig = hmac.new(SECRET, msg, hashlib.sha384).digest()
    elif alg == "RS256":
        sig = openssl_sign("keys/rsa.pem", msg)
    elif alg == "PS256":
        sig = openssl_sign("keys/rsa.pem", msg, ["-sigopt", "rsa_padding_mode:pss",
                                                 "-sigopt", "rsa_pss_saltlen:32"])
    elif alg == "ES256":
        sig = der_to_raw(openssl_sign("keys/ec.pem", msg))
    else:
        raise ValueError(alg)
    return msg.decode() + "." + b64(sig)

def write(target, name, data):
    d = f"corpus/{target}"
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str): data = data.encode()
    with open(f"{d}/seed-{name}", "wb") as f: f.write(data)

hs = sign("HS256", {"sub": "alice", "exp": EXP, "iat": 1700000000, "scope": "read write", "role": "admin"})
hs384 = sign("HS384", {"user": "bob", "exp": EXP, "nbf": 1700000000})
rs = sign("RS256", {"iss": ISS, "aud": "api", "sub": "alice", "exp": EXP, "scp": ["read"]}, kid="r1")
ps = sign("PS256", {"iss": ISS, "aud": ["api"], "login": "dave", "exp": EXP}, kid="r2")
ps_nokid = sign("PS256", {"iss": ISS, "aud": "api", "sub": "dave", "exp": EXP})
es = sign("ES256", {"iss": ISS, "aud": "api", "sub": "carol", "exp": EXP, "exp2": 1.5}, kid="e1")
expired = sign("HS256", {"sub": "alice", "exp": 1000000000})
crit = sign("HS256", {"sub": "alice", "exp": EXP}, header_extra={"crit": ["b64"]})
hs_for_iss = sign("HS256", {"iss": ISS, "sub": "alice", "exp": EXP})

# path
for i, p in enumerate(["/", "/status", "/a/./b/../c", "//status", "/st%61tus", "/%2e%2e/x",
                       "/a%3fb", "/caf%C3%A9", "/caf%c3%a9", "/public/x", "/publicx",
                       "/api/v1/users", "/static/app.js", "/admin", "/roles/x/..",
                       "/a%2Fb", "/a\\b", "/x/%2e/y", "/health/", "/a;b=c/..;/admin"]):
    write("path", f"{i:02}", bytes([i % 8]) + p.encode())

# bearer
bearer = [
    b"\x00authorization: Bearer " + hs.encode(),
    b"\x00authorization: bearer  a.b.c ",
    b"\x00?x=1&access_token=" + rs.encode(),
    b"\x00cookie: a=1; jwt=" + es.encode() + b"; b=2",
    b"\x00cookie: jwt=\"x.y.z\"\ncookie: other=1",
    b"\x00authorization: Bearer a.b.c\n?access_token=a.b.c",
    b"\x01authorization: Basic YWxpY2U6cHc=",
    b"\x02?access_token=a%2Bb.c&access_token=d",
    b"\x04cookie: jwt=; jwt=a",
    b"\x00authorization: Bearer\nauthorization: Bearer x",
]
for i, b in enumerate(bearer): write("bearer", f"{i:02}", b)

# verify: mode 0 = token as sent; odd modes = header\0payload signed by the harness
for i, t in enumerate([hs, hs384, rs, ps, ps_nokid, es, expired, crit, hs_for_iss,
                       "a.b.c", "eyJhbGciOiJub25lIn0.e30.", hs + "x"]):
    write("verify", f"tok{i:02}", b"\x00" + t.encode())
signed = [
    (1, {"alg": "HS256"}, {"sub": "alice", "exp": EXP}),
    (3, {"alg": "HS384", "kid": "k"}, {"user": "bob", "exp": EXP, "iat": 1700000000.5}),
    (5, {"alg": "RS256", "kid": "r1"}, {"iss": ISS, "aud": "api", "sub": "x", "exp": EXP}),
    (7, {"alg": "PS256"}, {"iss": ISS, "aud": ["api", "y"], "sub": "x", "exp": EXP}),
    (9, {"alg": "ES256", "kid": "e1"}, {"iss": ISS, "aud": "api", "login": "x", "exp": EXP, "nbf": 0}),
    (5, {"alg": "HS256"}, {"sub": "alice", "exp": EXP}),
    (1, {"alg": "HS256", "crit": None}, {"sub": "alice", "exp": EXP}),
    (1, {"alg": "HS256"}, {"sub": "alice", "exp": 18446744073709551615}),
]
for i, (mode, h, p) in enumerate(signed):
    write("verify", f"sig{i:02}", bytes([mode]) + json.dumps(h).encode() + b"\0" + json.dumps(p).encode())

# request: "METHOD TARGET" then headers; $0..$7 are fixture tokens
reqs = [
    "GET /api/v1?x=1\nauthorization: Bearer $0",
    "GET /status?token=status-secret&x=1",
    "HEAD /status?token=status-secret&token=status-secret",
    "GET /public/index.html",
    "POST /admin\nauthorization: Bearer $1",
    "GET /admin\ncookie: a=b; jwt=$0",
    "GET /api/items?access_token=$2&y=2",
    "OPTIONS /cors/x\norigin: https://a.example\naccess-control-request-method: GET",
    "GET /roles/x\nauthorization: Bearer $3",
    "GET /x\nauthorization: Bearer $4",
    "GET /x\nauthorization: Bearer $5",
    "DELETE /api/x/../y\nauthorization: Bearer $6",
    "GET http://example.com/st%61tus?token=status-secret",
    "GET /a//b/./c\nauthorization: Bearer $7",
    "GET /x\nauthorization: Bearer $0\ncookie: jwt=$1",
]
for i, r in enumerate(reqs): write("request", f"{i:02}", r)

# jwks
write("jwks", "jwks", b"\x00" + open("keys/jwks.json", "rb").read())
write("jwks", "jwks-mixed", b"\x00" + json.dumps({"keys": [
    {"kty": "oct", "k": "c2VjcmV0"},
    {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"},
    {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "ed"},
    {"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"},
]}).encode())
write("jwks", "discovery", b"\x01" + json.dumps({"issuer": ISS, "jwks_uri": ISS + "/jwks.json",
                                                  "token_endpoint": ISS + "/token"}).encode())
write("jwks", "discovery-other", b"\x01" + json.dumps({"issuer": ISS + "/", "jwks_uri": "ftp://x"}).encode())
write("jwks", "pem-rsa", b"\x02" + open("keys/rsa.pub.pem", "rb").read())
write("jwks", "pem-ec", b"\x02" + open("keys/ec.pub.pem", "rb").read())

# form
for i, f in enumerate(["grant_type=password&username=alice&password=s3cret",
                       "login=alice&password=a+b%26c", "a=1&a=2", "a&b=&=c&&",
                       "username=%E2%82%AC&password=%FF", "x=%zz&y=%4"]):
    write("form", f"{i:02}", f)
write("form", "bad-utf8", b"a=\xff")

# config
write("config", "example-toml", b"\x00" + open("../config/example.toml", "rb").read())
write("config", "example-yaml", b"\x01" + open("../config/example.yaml", "rb").read())
write("config", "issuers-toml", b"\x00" + b'''
[auth.secret]
value = "s"
[[auth.issuers]]
issuer = "https://idp.example.com"
jwks_uri = "https://idp.example.com/jwks"
algorithms = ["RS256", "ES256"]
cache_ttl = "10m"
refetch_interval = "30s"
max_stale = "24h"
[[auth.issuers]]
issuer = "https://idp2.example.com"
[[routes]]
prefix = "/public/"
auth = "none"
[[routes]]
path = "/admin"
methods = ["get"]
allowed_users = ["alice"]
require_claims = { role = "admin" }
''')
write("config", "issuers-yaml", b"\x01" + b'''
auth:
  token_cache: 0
  secret: {value: s, algorithms: [HS256, HS512]}
  issuers:
    - issuer: https://idp.example.com
      refetch_interval: 1m
routes:
  - prefix: /api
    methods: [GET, POST]
    require_scopes: [read]
''')
# Byte 0 bit 1: the state is built with every bounded duration and size at
# the top of its accepted range.
for name in ("example-toml", "issuers-toml"):
    with open(f"corpus/config/seed-{name}", "rb") as f:
        write("config", "stretched-" + name, b"\x02" + f.read()[1:])
