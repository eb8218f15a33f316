//! The OpenAPI 3 document, served at `/openapi.json`.

use axum::Json;
use serde_json::{json, Value};

fn error_responses() -> Value {
    let err = json!({"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    json!({"400": err, "401": err, "403": err, "404": err, "409": err, "413": err})
}

fn path_params(names: &[&str]) -> Value {
    Value::Array(
        names
            .iter()
            .map(|n| json!({"name": n, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect(),
    )
}

fn ok(schema: Value) -> Value {
    json!({"description": "ok", "content": {"application/json": {"schema": schema}}})
}

pub(crate) async fn document() -> Json<Value> {
    Json(build())
}

pub fn build() -> Value {
    let resource = json!({"$ref": "#/components/schemas/Resource"});
    let mut errors = error_responses();
    let with = |code: &str, body: Value| {
        let mut r = error_responses();
        r[code] = body;
        r
    };
    errors["200"] = ok(json!({"type": "object"}));
    let selector =
        json!({"name": "selector", "in": "query", "required": false, "schema": {"type": "string"}});
    let body = json!({"required": true, "content": {"application/json": {"schema": resource}}});
    json!({
        "openapi": "3.0.3",
        "info": {"title": "omni", "version": env!("CARGO_PKG_VERSION")},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
                "Metadata": {"type": "object", "required": ["type"], "properties": {
                    "namespace": {"type": "string"}, "type": {"type": "string"}, "id": {"type": "string"},
                    "version": {"type": "integer", "minimum": 0}, "owner": {"type": "string"},
                    "phase": {"type": "string", "enum": ["running", "tearingDown"]},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                    "finalizers": {"type": "array", "items": {"type": "string"}}}},
                "Resource": {"type": "object", "required": ["metadata"], "properties": {
                    "metadata": {"$ref": "#/components/schemas/Metadata"}, "spec": {"type": "object"}}},
            }
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/v1/resources": {"post": {"operationId": "createResource", "requestBody": body, "responses": with("201", ok(resource.clone()))}},
            "/api/v1/apply": {"post": {"operationId": "applyResource", "requestBody": body, "responses": with("200", ok(json!({"type": "object"})))}},
            "/api/v1/apply/batch": {"post": {"operationId": "applyBatch", "requestBody": {"required": true, "content": {"application/json": {"schema": {
                "type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": resource}}}}}},
                "responses": with("200", ok(json!({"type": "object", "properties": {"results": {"type": "array", "items": {"type": "object"}}}})))}},
            "/api/v1/resources/{kind}/{namespace}": {"get": {"operationId": "listResources",
                "parameters": [path_params(&["kind", "namespace"])[0], path_params(&["kind", "namespace"])[1], selector],
                "responses": with("200", ok(json!({"type": "object", "properties": {"items": {"type": "array", "items": resource}}})))}},
            "/api/v1/resources/{kind}/{namespace}/{id}": {
                "parameters": path_params(&["kind", "namespace", "id"]),
                "get": {"operationId": "getResource", "responses": with("200", ok(resource.clone()))},
                "put": {"operationId": "updateResource", "requestBody": body, "responses": with("200", ok(resource.clone()))},
                "delete": {"operationId": "deleteResource", "responses": with("200", ok(json!({"type": "object"})))}},
            "/api/v1/tokens": {"post": {"operationId": "createToken", "requestBody": {"required": true, "content": {"application/json": {"schema": {
                "type": "object", "required": ["role"], "properties": {"role": {"type": "string", "enum": ["reader", "operator", "admin"]}, "description": {"type": "string"}}}}}},
                "responses": with("201", ok(json!({"type": "object"})))}},
            "/api/v1/tokens/{id}": {"delete": {"operationId": "revokeToken", "parameters": path_params(&["id"]), "responses": errors}},
            "/healthz": {"get": {"operationId": "health", "security": [], "responses": {"200": {"description": "ok"}}}},
        }
    })
}
