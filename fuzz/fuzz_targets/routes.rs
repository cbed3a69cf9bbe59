//! The route matcher: any method and path (percent-encoded or not) resolve to a route, or
//! to a 404, 405 or 400 whose message stays short.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onnx_serve::api::{App, ROUTES};
use onnx_serve::http::{Method, Router};
use std::sync::LazyLock;

static ROUTER: LazyLock<Router<App>> = LazyLock::new(|| Router::new(&ROUTES));

fuzz_target!(|data: &[u8]| {
    // tiny_http hands over the method and the path as text.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (method, path) = text.split_once(' ').unwrap_or(("GET", text));
    let router = &*ROUTER;
    let resolved = router
        .find(path)
        .and_then(|found| router.handler(&found, Method::parse(method), method, path));
    if let Err(e) = resolved {
        assert!(matches!(e.status, 400 | 404 | 405), "{}", e.status);
        assert!(e.message.len() < 400, "a long path is not echoed whole");
    }
});
