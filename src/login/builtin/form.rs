//! The built-in sign-in page itself: one HTML form that works without
//! JavaScript, every value HTML-escaped, the operator's stylesheet inlined,
//! under `Content-Security-Policy: default-src 'none'; style-src
//! 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'` (plus the
//! return URL's origin in `form-action` when it is on another allowed host:
//! browsers apply `form-action` to the redirect that follows the POST).

use bytes::Bytes;
use http::header::{CONTENT_SECURITY_POLICY, RETRY_AFTER};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;

use crate::respond::{escape_html, page_response};

/// What one rendering of the form shows.
pub struct Form<'a> {
    pub title: &'a str,
    pub stylesheet: Option<&'a str>,
    /// A message above the form (a failed attempt), never naming a field.
    pub message: Option<&'a str>,
    pub csrf: &'a str,
    /// The checked return path (a path of this origin, or an allowed URL).
    pub return_to: &'a str,
}

/// The page's own few rules; the operator's stylesheet comes after them.
const BASE_CSS: &str = "body{font-family:system-ui,sans-serif;margin:0;display:flex;\
justify-content:center}main{margin-top:10vh;width:20rem;max-width:90vw}\
label,input,button{display:block;width:100%;box-sizing:border-box}\
input{margin:.25rem 0 1rem;padding:.5rem}button{padding:.5rem}\
.error{color:#a00}";

impl Form<'_> {
    /// The page with `status`.
    pub fn response(&self, status: StatusCode) -> Response<Full<Bytes>> {
        let e = escape_html;
        let message = self
            .message
            .map(|m| {
                format!(
                    "<p class=\"error\" id=\"error\" role=\"alert\">{}</p>\n",
                    e(m)
                )
            })
            .unwrap_or_default();
        let html = format!(
            "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{title}</title>\n<style>{BASE_CSS}\n{css}</style>\n</head>\n<body>\n<main>\n\
             <h1>{title}</h1>\n{message}\
             <form method=\"post\" action=\"/.jwtgate/login\">\n\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\n\
             <input type=\"hidden\" name=\"rd\" value=\"{rd}\">\n\
             <label for=\"username\">User name</label>\n\
             <input id=\"username\" name=\"username\" autocomplete=\"username\" autocapitalize=\"none\" required autofocus>\n\
             <label for=\"password\">Password</label>\n\
             <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\n\
             <button type=\"submit\" id=\"submit\">Sign in</button>\n\
             </form>\n</main>\n</body>\n</html>\n",
            title = e(self.title),
            css = self.stylesheet.unwrap_or_default(),
            csrf = e(self.csrf),
            rd = e(self.return_to),
        );
        let mut resp = page_response(status, html);
        if let Some(origin) = (!self.return_to.starts_with('/'))
            .then(|| super::super::endpoints::origin_of(self.return_to))
            .flatten()
            && let Ok(v) = HeaderValue::from_str(&format!(
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' {origin}; frame-ancestors 'none'"
            ))
        {
            resp.headers_mut().insert(CONTENT_SECURITY_POLICY, v);
        }
        resp
    }

    /// The page with 429 and `Retry-After`.
    pub fn limited(&self, retry_after: u64) -> Response<Full<Bytes>> {
        let mut resp = self.response(StatusCode::TOO_MANY_REQUESTS);
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(retry_after.max(1)));
        resp
    }
}

/// A stylesheet fit to inline: text, without `<` (nothing in it can close
/// the `<style>` element).
pub fn check_stylesheet(css: &[u8]) -> Result<String, &'static str> {
    let css = std::str::from_utf8(css).map_err(|_| "is not UTF-8 text")?;
    if css.contains('<') {
        return Err(
            "contains '<' (a stylesheet to inline must not, so that nothing in it can end the <style> element)",
        );
    }
    Ok(css.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body(r: Response<Full<Bytes>>) -> String {
        String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn every_value_is_escaped() {
        let f = Form {
            title: "<b>Acme</b> & \"co\"",
            stylesheet: Some("main{color:red}"),
            message: Some("<i>no</i>"),
            csrf: "a\"><script>",
            return_to: "/x?\"><script>alert(1)</script>",
        };
        let r = f.response(StatusCode::UNAUTHORIZED);
        assert_eq!(r.status(), 401);
        assert_eq!(
            r.headers()[CONTENT_SECURITY_POLICY],
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
        );
        let html = body(r).await;
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<b>") && !html.contains("<i>"), "{html}");
        assert!(html.contains("&lt;b&gt;Acme&lt;/b&gt; &amp; &quot;co&quot;"));
        assert!(html.contains("value=\"/x?&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;\""));
        assert!(html.contains("main{color:red}"));
        assert!(html.contains("id=\"error\""));
    }

    #[tokio::test]
    async fn an_absolute_return_url_is_allowed_as_a_form_target_and_429_says_when() {
        let f = Form {
            title: "t",
            stylesheet: None,
            message: None,
            csrf: "c",
            return_to: "https://app.example.com/x",
        };
        let r = f.limited(30);
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()[RETRY_AFTER], "30");
        assert!(
            r.headers()[CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("form-action 'self' https://app.example.com;")
        );
        assert!(!body(r).await.contains("id=\"error\""));
    }

    #[test]
    fn stylesheets_that_could_end_the_style_element_are_refused() {
        assert!(check_stylesheet(b"body{color:red}").is_ok());
        assert!(check_stylesheet(b"</style><script>x</script>").is_err());
        assert!(check_stylesheet(&[0xff, 0xfe]).is_err());
    }
}
