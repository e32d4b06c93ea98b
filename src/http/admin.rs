//! The admin API (main listener): monitor the server and act on rooms.
//! Admin credentials only; replies never carry secrets.

use std::sync::Arc;

use axum::extract::{FromRequest, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Map, Value};

use super::request::{body_params, query_params, read_body, require_admin, Peer, Reply};
use crate::app::AppState;
use crate::logging::Chain;
use crate::protocol::api::{parse_flag, ApiStatus, Envelope};
use crate::protocol::{event, parse_id, parse_offset};
use crate::store::sync_page;

/// The admin routes.
pub(crate) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/monitor/stat", get(stat))
        .route("/admin/monitor/room_users", get(room_users))
        .route("/admin/monitor/room_msgs", get(room_msgs))
        .route("/admin/system/push", post(push))
        .route("/admin/system/config", post(config))
        .route("/admin/system/clear_room_msgs", post(clear_room_msgs))
        .route("/admin/system/clear_room_msg", post(clear_room_msg))
}

/// A checked admin request: admin credentials verified, its query and
/// body parameters merged (body wins). Extracting it answers the request
/// itself when the credentials are wrong (status 1; the body is not read),
/// or the body is malformed (400), too large (413) or too slow (408).
pub(crate) struct AdminRequest {
    state: Arc<AppState>,
    params: Map<String, Value>,
}

impl FromRequest<Arc<AppState>> for AdminRequest {
    type Rejection = Response;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, Response> {
        let headers = req.headers().clone();
        let query = query_params(req.uri().query());
        let peer = Peer(
            req.extensions()
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip()),
        );
        require_admin(state, peer, &headers, &query)
            .await
            .map_err(|e| Reply::from(e).into_response())?;
        let body = read_body(req.into_body())
            .await
            .map_err(IntoResponse::into_response)?;
        let body = body_params(&headers, &body).map_err(IntoResponse::into_response)?;
        let mut params = query;
        params.extend(body);
        Ok(Self {
            state: state.clone(),
            params,
        })
    }
}

impl AdminRequest {
    /// The `roomId` parameter's string form.
    fn room(&self) -> Option<String> {
        self.params
            .get("roomId")
            .and_then(parse_id)
            .map(|id| id.key)
    }
}

fn failed(e: impl std::error::Error + 'static) -> Reply {
    tracing::error!(error = %Chain(&e), "admin call failed");
    Envelope::fail(ApiStatus::OperationFailed).into()
}

/// Who is online: users, rooms, sockets, the forceUserAuth switch, memory.
#[utoipa::path(get, path = "/admin/monitor/stat", tag = "admin",
    params(("uid" = Option<String>, Query, description = "admin uid (or HTTP Basic auth)"),
           ("token" = Option<String>, Query, description = "admin token (or HTTP Basic auth)")),
    responses((status = 200, body = Envelope, description = "data: {online_user_count, online_users: [{uid, socketId}], online_room_count, online_rooms, online_socket_count, force_user_auth, memory}")))]
pub(crate) async fn stat(req: AdminRequest) -> Reply {
    let state = &req.state;
    let cluster = &state.cluster();
    let (users, rooms, force) = match (
        cluster.online_users().await,
        cluster.rooms().await,
        cluster.force_user_auth().await,
    ) {
        (Ok(u), Ok(r), Ok(f)) => (u, r, f),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return failed(e),
    };
    let online_users: Vec<Value> = users
        .iter()
        .map(|(uid, sid)| json!({"uid": uid, "socketId": sid}))
        .collect();
    let distinct_users = {
        let mut uids: Vec<&String> = users.iter().map(|(u, _)| u).collect();
        uids.dedup();
        uids.len()
    };
    let local_sockets = state.io().sockets().len();
    let sockets = state
        .cluster()
        .socket_count(local_sockets)
        .await
        .unwrap_or(local_sockets);
    Envelope::ok(json!({
        "online_user_count": distinct_users,
        "online_users": online_users,
        "online_room_count": rooms.len(),
        "online_rooms": rooms,
        "online_socket_count": sockets,
        "force_user_auth": force,
        "memory": memory(),
    }))
    .into()
}

/// This process's memory use, from /proc where the platform has it.
fn memory() -> Value {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let mut fields = statm
        .split_whitespace()
        .map(|f| f.parse::<u64>().unwrap_or(0));
    let virt = fields.next().unwrap_or(0);
    let rss = fields.next().unwrap_or(0);
    const PAGE: u64 = 4096;
    json!({"rss_bytes": rss * PAGE, "virtual_bytes": virt * PAGE})
}

/// The members of a room in join order, without dummies.
#[utoipa::path(get, path = "/admin/monitor/room_users", tag = "admin",
    params(("roomId" = String, Query), ("uid" = Option<String>, Query), ("token" = Option<String>, Query)),
    responses((status = 200, body = Envelope, description = "data: {users: [{uid}]}; 5 without roomId")))]
pub(crate) async fn room_users(req: AdminRequest) -> Reply {
    let state = &req.state;
    let Some(room) = req.room() else {
        return Envelope::fail(ApiStatus::ParamError).into();
    };
    match state.cluster().members(&room).await {
        Ok(members) => {
            let users: Vec<Value> = members
                .iter()
                .filter(|m| !m.dummy)
                .map(|m| json!({"uid": m.uid}))
                .collect();
            Envelope::ok(json!({"users": users})).into()
        }
        Err(e) => failed(e),
    }
}

/// A page of a room's stored messages, with the time each was stored.
#[utoipa::path(get, path = "/admin/monitor/room_msgs", tag = "admin",
    params(("roomId" = String, Query), ("offset" = Option<u64>, Query), ("uid" = Option<String>, Query), ("token" = Option<String>, Query)),
    responses((status = 200, body = Envelope, description = "data: {msgs: {data: [{data, ts}], offset, next}}; 5 without roomId")))]
pub(crate) async fn room_msgs(req: AdminRequest) -> Reply {
    let state = &req.state;
    let Some(room) = req.room() else {
        return Envelope::fail(ApiStatus::ParamError).into();
    };
    let offset = req
        .params
        .get("offset")
        .map(|v| parse_offset(v, true))
        .unwrap_or(0);
    let page = match sync_page(
        state.messages().as_ref(),
        &room,
        offset,
        state.config().sync_page_size,
        state.config().sync_page_max_bytes,
    )
    .await
    {
        Ok(p) => p,
        Err(e) => return failed(e),
    };
    let data: Vec<Value> = page
        .entries
        .iter()
        .map(|e| {
            let msg: Value = serde_json::from_str(e.body.get()).unwrap_or(Value::Null);
            json!({"data": msg, "ts": e.ts})
        })
        .collect();
    Envelope::ok(
        json!({"msgs": {"data": data, "offset": page.next_offset, "next": u8::from(page.more)}}),
    )
    .into()
}

/// Sends a `system` event with `content` to every member of a room, dummies included.
#[utoipa::path(post, path = "/admin/system/push", tag = "admin",
    params(("uid" = Option<String>, Query), ("token" = Option<String>, Query)),
    request_body(content = Object, description = "{roomId, content}"),
    responses((status = 200, body = Envelope, description = "{}; 5 without roomId; 7 if nobody is in the room")))]
pub(crate) async fn push(req: AdminRequest) -> Reply {
    let state = &req.state;
    let Some(room) = req.room() else {
        return Envelope::fail(ApiStatus::ParamError).into();
    };
    match state.cluster().members(&room).await {
        Ok(m) if m.is_empty() => return Envelope::fail(ApiStatus::RoomNotExists).into(),
        Ok(_) => {}
        Err(e) => return failed(e),
    }
    let content = req.params.get("content").cloned().unwrap_or(Value::Null);
    let content = match serde_json::value::to_raw_value(&content) {
        Ok(c) => c,
        Err(e) => return failed(e),
    };
    state
        .bus()
        .to_room(&room, event::SYSTEM, &content, None)
        .await;
    tracing::info!(room = ?crate::client_log::Clipped(&room), "system push");
    Envelope::ok(json!({})).into()
}

/// Sets `forceUserAuth`: real token checks even in development mode.
#[utoipa::path(post, path = "/admin/system/config", tag = "admin",
    params(("uid" = Option<String>, Query), ("token" = Option<String>, Query)),
    request_body(content = Object, description = "{forceUserAuth: bool} (form strings \"true\"/\"false\" too)"),
    responses((status = 200, body = Envelope, description = "{}; 5 when forceUserAuth is missing or not a boolean")))]
pub(crate) async fn config(req: AdminRequest) -> Reply {
    let state = &req.state;
    let Some(on) = req.params.get("forceUserAuth").and_then(parse_flag) else {
        return Envelope::fail(ApiStatus::ParamError).into();
    };
    match state.cluster().set_force_user_auth(on).await {
        Ok(()) => {
            tracing::info!(force_user_auth = on, "config changed");
            Envelope::ok(json!({})).into()
        }
        Err(e) => failed(e),
    }
}

/// Deletes a room's whole history (its epoch changes).
#[utoipa::path(post, path = "/admin/system/clear_room_msgs", tag = "admin",
    params(("roomId" = Option<String>, Query), ("uid" = Option<String>, Query), ("token" = Option<String>, Query)),
    request_body(content = Object, description = "{roomId} (or ?roomId=)"),
    responses((status = 200, body = Envelope, description = "{}; 5 without roomId")))]
pub(crate) async fn clear_room_msgs(req: AdminRequest) -> Reply {
    clear(req).await
}

/// Same as `clear_room_msgs` (the original service's spelling).
#[utoipa::path(post, path = "/admin/system/clear_room_msg", tag = "admin",
    params(("roomId" = Option<String>, Query), ("uid" = Option<String>, Query), ("token" = Option<String>, Query)),
    request_body(content = Object, description = "{roomId} (or ?roomId=)"),
    responses((status = 200, body = Envelope, description = "{}; 5 without roomId")))]
pub(crate) async fn clear_room_msg(req: AdminRequest) -> Reply {
    clear(req).await
}

async fn clear(req: AdminRequest) -> Reply {
    let state = &req.state;
    let Some(room) = req.room() else {
        return Envelope::fail(ApiStatus::ParamError).into();
    };
    let cleared = state.messages().clear(&room).await;
    // Even a failed clear may have taken effect (a timeout, say).
    state.bus().history_cleared();
    match cleared {
        Ok(()) => {
            tracing::info!(room = ?crate::client_log::Clipped(&room), "room history cleared");
            Envelope::ok(json!({})).into()
        }
        Err(e) => failed(e),
    }
}
