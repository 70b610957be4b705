//! DDP framing rules.

use crate::support::*;
use serde_json::json;

#[tokio::test]
async fn connect_and_ping() {
    let s = TestServer::start().await;
    let mut c = s.guest().await;
    c.send(json!({"msg": "ping", "id": "p1"})).await;
    let f = c.expect(|f| f["msg"] == "pong").await;
    assert_eq!(f["id"], "p1");
}
