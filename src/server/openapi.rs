//! `GET /openapi.json`: an OpenAPI 3.1 document of every route, generated from the handlers'
//! annotations and the request and response types themselves (utoipa), so it cannot describe
//! a field the code does not have. Open without a key, like `/healthz`.

use axum::Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{api_error, dify, fastgpt, health, metrics, native, sandbox_module};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sandlot",
        description = "Runs untrusted Python and JavaScript code-node snippets (and jailed shell \
                       commands) in single-use, kernel-jailed processes. Besides its own API it \
                       answers dify-sandbox's and FastGPT's sandbox APIs unchanged.",
        license(name = "Apache-2.0"),
    ),
    paths(
        native::run,
        dify::run,
        dify::dependencies,
        dify::refresh_dependencies,
        dify::update_dependencies,
        fastgpt::javascript,
        fastgpt::python,
        fastgpt::modules,
        sandbox_module::execute_js,
        sandbox_module::execute_python,
        sandbox_module::execute_shell,
        health::healthz,
        health::health,
        health::readyz,
        metrics::metrics,
        document,
    ),
    components(schemas(api_error::ErrorBody)),
    modifiers(&Keys),
    tags(
        (name = "native", description = "sandlot's own API (docs/api.md)"),
        (name = "dify", description = "dify-sandbox's API"),
        (name = "fastgpt", description = "FastGPT 4.14.8's sandbox API"),
        (name = "sandbox module", description = "The sandbox module API"),
        (name = "operations", description = "Health, readiness, metrics and this document; no key needed"),
    ),
)]
struct Document;

/// The two ways a client may present its key.
struct Keys;

impl Modify for Keys {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Api-Key"))),
        );
    }
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of this server", body = Object)),
)]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    let mut document = Document::openapi();
    document.info.version = env!("CARGO_PKG_VERSION").to_owned();
    Json(document)
}
