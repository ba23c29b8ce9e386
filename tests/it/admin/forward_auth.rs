//! The decision-only listener for nginx `auth_request` / Traefik ForwardAuth.

use crate::support::*;
use serde_json::json;

const SECRET: &str = "forward-auth-secret-0123456789abcdef";

fn gate(up: &Upstream) -> Gate {
    GateBuilder::toml(&format!(
        "forward_auth_listen = \"127.0.0.1:0\"\n\
         [upstream]\nurl = \"{}\"\n\
         [auth]\nallowed_users = [\"alice\", \"bob\"]\n\
         [auth.secret]\nvalue = \"{SECRET}\"\n\
         [status]\ntoken = \"st-token\"\n\
         [forward]\nclaims_headers = {{ email = \"X-Auth-Email\" }}\n\
         [[routes]]\nprefix = \"/public/\"\nauth = \"none\"\n\
         [[routes]]\nprefix = \"/admin\"\nrequire_claims = {{ role = \"admin\" }}\n",
        up.url()
    ))
    .expect_forward_auth()
    .start()
}

async fn ask(gate: &Gate, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = client().get(format!("http://{}/auth", gate.forward_auth.unwrap()));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_nginx_and_traefik_questions() {
    let up = Upstream::start().await;
    let gate = gate(&up);
    let token = hs256(
        SECRET,
        &json!({"sub": "alice", "email": "a@example.com", "exp": now() + 600}),
    );
    let auth = bearer(&token);

    // nginx auth_request
    let r = ask(
        &gate,
        &[
            ("x-original-method", "GET"),
            ("x-original-uri", "/app/x?y=1"),
            ("authorization", &auth),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-auth-user"), "alice");
    assert_eq!(header(&r, "x-auth-email"), "a@example.com");

    // Traefik ForwardAuth
    let r = ask(
        &gate,
        &[
            ("x-forwarded-method", "POST"),
            ("x-forwarded-uri", "/app"),
            ("authorization", &auth),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);

    // No token: the rejection of the table.
    let r = ask(
        &gate,
        &[("x-forwarded-method", "GET"), ("x-forwarded-uri", "/app")],
    )
    .await;
    assert_eq!(r.status(), 401);
    assert_eq!(header(&r, "www-authenticate"), "Bearer realm=\"jwtgate\"");

    // Exemptions apply to the described request.
    let r = ask(
        &gate,
        &[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/public/a"),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-auth-user").is_none());
    let r = ask(
        &gate,
        &[
            ("x-original-method", "GET"),
            ("x-original-uri", "/status?token=st-token"),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    let r = ask(
        &gate,
        &[
            ("x-original-method", "GET"),
            ("x-original-uri", "/status/?token=st-token"),
        ],
    )
    .await;
    assert_eq!(r.status(), 401);

    // Authorisation: not allowed user, missing claim.
    let carol = hs256(SECRET, &json!({"sub": "carol", "exp": now() + 600}));
    let r = ask(
        &gate,
        &[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/app"),
            ("authorization", &bearer(&carol)),
        ],
    )
    .await;
    assert_eq!(r.status(), 403);
    let r = ask(
        &gate,
        &[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/admin/x"),
            ("authorization", &auth),
        ],
    )
    .await;
    assert_eq!(r.status(), 403);

    // Bad questions.
    let r = ask(&gate, &[("authorization", &auth)]).await;
    assert_eq!(r.status(), 400);
    let r = ask(
        &gate,
        &[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/a%2Fb"),
            ("authorization", &auth),
        ],
    )
    .await;
    assert_eq!(r.status(), 400);
    // A missing method is a bad question, not a GET (the verdict would be
    // for a request nobody described).
    let r = ask(
        &gate,
        &[("x-forwarded-uri", "/app"), ("authorization", &auth)],
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(up.count(), 0, "the forward-auth listener never forwards");
}

/// The verdict must hold for the URI the ingress forwards as it is: a
/// description that the gate would read differently (dot segments, `//`,
/// encoded characters, path parameters) is refused rather than answered for
/// its normal form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_descriptions_that_are_not_in_normal_form() {
    let up = Upstream::start().await;
    let gate = gate(&up);
    let token = hs256(SECRET, &json!({"sub": "alice", "exp": now() + 600}));
    let auth = bearer(&token);
    for uri in [
        "/public/../admin/x",
        "/public/./x",
        "/public//x",
        "//public/x",
        "/public/%2e%2e/admin/x",
        "/%70ublic/x",
        "/public/..;/admin/x",
        "/public;x/a",
        "/public/a%3Bb",
        "/public/a#frag",
        "/public/%252e%252e/admin",
    ] {
        for (method_h, uri_h) in [
            ("x-forwarded-method", "x-forwarded-uri"),
            ("x-original-method", "x-original-uri"),
        ] {
            let r = ask(&gate, &[(method_h, "GET"), (uri_h, uri)]).await;
            assert_eq!(r.status(), 400, "{uri_h}: {uri}");
            let r = ask(
                &gate,
                &[(method_h, "GET"), (uri_h, uri), ("authorization", &auth)],
            )
            .await;
            assert_eq!(r.status(), 400, "{uri_h}: {uri} with a token");
        }
    }
    // The normal forms themselves are answered.
    let r = ask(
        &gate,
        &[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/public/x"),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    let r = ask(
        &gate,
        &[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/public/a%20b?q=1"),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    let r = ask(
        &gate,
        &[
            ("x-forwarded-method", "CONNECT"),
            ("x-forwarded-uri", "/public/x"),
        ],
    )
    .await;
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_listener_ignores_forward_auth_headers() {
    let up = Upstream::start().await;
    let gate = gate(&up);
    let r = client()
        .get(gate.url("/private"))
        .header("x-original-uri", "/status?token=st-token")
        .header("x-forwarded-uri", "/public/x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(up.count(), 0);
}
