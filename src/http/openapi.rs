//! OpenAPI documents of the two HTTP APIs, generated from the handlers'
//! annotations and served at `/openapi.json` on each listener.

use utoipa::OpenApi;

use crate::protocol::api::{Envelope, Meta};

/// The internal listener: the accounts API and health.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Always Online accounts API",
        description = "Create and refresh user tokens. Served on the internal listener (AO_API_LISTEN)."
    ),
    paths(
        super::accounts::create_token,
        super::accounts::refresh_token,
        super::health::healthz,
        super::health::readyz,
    ),
    components(schemas(Envelope, Meta, super::accounts::UidBody))
)]
pub(crate) struct AccountsApi;

/// The admin API, health and metrics: on the main listener, or on the
/// admin listener when `AO_ADMIN_LISTEN` is set.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Always Online admin API",
        description = "Monitor the server and act on rooms. Served on the main listener (AO_LISTEN) beside socket.io, or on the admin listener when AO_ADMIN_LISTEN is set."
    ),
    paths(
        super::admin::stat,
        super::admin::room_users,
        super::admin::room_msgs,
        super::admin::push,
        super::admin::config,
        super::admin::clear_room_msgs,
        super::admin::clear_room_msg,
        super::health::healthz,
        super::health::readyz,
        super::metrics::metrics,
    ),
    components(schemas(Envelope, Meta))
)]
pub(crate) struct AdminApi;
