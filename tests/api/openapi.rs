//! The OpenAPI document: served, complete, and unchanged unless the snapshot is updated
//! (`UPDATE_SNAPSHOTS=1 cargo test --test api openapi`).

use serde_json::Value;

use crate::helpers::spawn_app;

const SNAPSHOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");

#[tokio::test]
async fn the_served_spec_matches_the_committed_snapshot() {
    let app = spawn_app().await;
    let served = app
        .raw(app.client.get(format!("{}/openapi.json", app.address)))
        .await;
    served.assert_status(200);
    let pretty = serde_json::to_string_pretty(&served.body).expect("json") + "\n";
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(SNAPSHOT, &pretty).expect("write snapshot");
    }
    let committed = std::fs::read_to_string(SNAPSHOT).unwrap_or_default();
    assert!(
        committed == pretty,
        "docs/openapi.json differs from the served spec; review the API change and run \
         UPDATE_SNAPSHOTS=1 cargo test --test api openapi"
    );
}

#[tokio::test]
async fn every_operation_has_an_id_and_documents_problem_responses() {
    let spec: Value = serde_json::from_str(&order_service::http::openapi().spec()).expect("spec");
    assert!(spec["openapi"]
        .as_str()
        .is_some_and(|v| v.starts_with("3.")));
    let mut ids = std::collections::HashSet::new();
    for (path, methods) in spec["paths"].as_object().expect("paths") {
        for (method, op) in methods.as_object().expect("methods") {
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(ids.insert(id.to_owned()), "duplicate operationId {id}");
            if path.starts_with("/v1") {
                assert!(
                    op["responses"]["401"]["content"]["application/problem+json"].is_object(),
                    "{id} documents 401"
                );
                assert!(op["security"].is_array(), "{id} requires a bearer token");
            }
        }
    }
}

#[tokio::test]
async fn swagger_ui_is_served() {
    let app = spawn_app().await;
    let docs = app
        .raw(app.client.get(format!("{}/docs", app.address)))
        .await;
    docs.assert_status(200);
    assert!(
        docs.text.contains("swagger"),
        "{}",
        &docs.text[..docs.text.len().min(200)]
    );
}

#[tokio::test]
async fn the_live_feeds_are_in_the_document_as_event_streams_with_statuses() {
    let app = spawn_app().await;
    let spec = app
        .raw(app.client.get(format!("{}/openapi.json", app.address)))
        .await
        .body;
    for (path, id) in [
        ("/v1/orders/{id}/live", "orderLive"),
        ("/v1/stores/{id}/live", "storeLive"),
    ] {
        let get = &spec["paths"][path]["get"];
        assert_eq!(get["operationId"], id, "{path}");
        assert_eq!(
            get["responses"]["200"]["content"]["text/event-stream"]["schema"]["$ref"],
            "#/components/schemas/LiveMessage",
            "{path}"
        );
        assert!(get["responses"]["404"]["content"]["application/problem+json"].is_object());
    }
    let message = &spec["components"]["schemas"]["LiveMessage"]["properties"];
    let data = message["data"]["description"].as_str().expect("described");
    assert!(
        data.contains("`status`") && data.contains("`previous_status`"),
        "{data}"
    );
}

/// The problem statuses an operation documents, by operation id.
fn problems(spec: &Value, path: &str, method: &str) -> Vec<u16> {
    let responses = spec["paths"][path][method]["responses"]
        .as_object()
        .unwrap_or_else(|| panic!("{method} {path}"));
    responses
        .iter()
        .filter(|(_, r)| r["content"]["application/problem+json"].is_object())
        .map(|(status, _)| status.parse().expect("status"))
        .collect()
}

#[tokio::test]
async fn each_operation_documents_the_problems_it_can_answer_and_the_request_id() {
    let spec: Value = serde_json::from_str(&order_service::http::openapi_json()).expect("spec");

    // a read by id: no body, no If-Match, no command
    let read = problems(&spec, "/v1/orders/{id}", "get");
    for absent in [409, 412, 413, 415] {
        assert!(
            !read.contains(&absent),
            "GET /v1/orders/{{id}} documents {absent}: {read:?}"
        );
    }
    for present in [400, 401, 403, 404, 406, 422, 429, 500, 503] {
        assert!(
            read.contains(&present),
            "GET /v1/orders/{{id}} lacks {present}: {read:?}"
        );
    }
    // a list: nothing to find by id
    assert!(!problems(&spec, "/v1/stores", "get").contains(&404));
    // a command with a body and If-Match: all of them
    let change = problems(&spec, "/v1/orders/{id}/items/{line_id}", "patch");
    for present in [400, 404, 409, 412, 413, 415, 422] {
        assert!(
            change.contains(&present),
            "PATCH item lacks {present}: {change:?}"
        );
    }
    // a command without a body: no 413/415
    let place = problems(&spec, "/v1/orders/{id}/place", "post");
    assert!(!place.contains(&413) && !place.contains(&415), "{place:?}");

    // every /v1 operation takes and every answer returns x-request-id
    for (path, methods) in spec["paths"].as_object().expect("paths") {
        for (method, op) in methods.as_object().expect("methods") {
            let responses = op["responses"].as_object().expect("responses");
            for (status, response) in responses {
                assert!(
                    response["headers"]["x-request-id"].is_object(),
                    "{method} {path} {status} documents no x-request-id"
                );
            }
            if path.starts_with("/v1/") {
                let takes = op["parameters"].as_array().is_some_and(|ps| {
                    ps.iter()
                        .any(|p| p["$ref"] == "#/components/parameters/RequestId")
                });
                assert!(takes, "{method} {path} takes no x-request-id");
            }
        }
    }
    let parameter = &spec["components"]["parameters"]["RequestId"];
    assert_eq!(parameter["name"], "x-request-id");
    assert!(parameter["description"]
        .as_str()
        .is_some_and(|d| d.contains("64")));
}

#[tokio::test]
async fn every_property_and_parameter_is_described_and_every_body_has_an_example() {
    let spec: Value = serde_json::from_str(&order_service::http::openapi_json()).expect("spec");
    let mut missing = Vec::new();

    // what a generated client's types say: each property's meaning
    for (name, schema) in spec["components"]["schemas"].as_object().expect("schemas") {
        let properties = schema["properties"].as_object().into_iter().flatten();
        for (property, definition) in properties {
            let described = definition["description"]
                .as_str()
                .is_some_and(|d| !d.trim().is_empty());
            if !described {
                missing.push(format!(
                    "schema {name}: property `{property}` has no description"
                ));
            }
        }
    }

    for (path, methods) in spec["paths"].as_object().expect("paths") {
        for (method, op) in methods.as_object().expect("methods") {
            for parameter in op["parameters"].as_array().into_iter().flatten() {
                let described = parameter["$ref"].is_string()
                    || parameter["description"]
                        .as_str()
                        .is_some_and(|d| !d.is_empty());
                if !described {
                    missing.push(format!(
                        "{method} {path}: `{}` undescribed",
                        parameter["name"]
                    ));
                }
            }
            // every body: the request's, each answer's (problems, texts, event streams too)
            let request = op["requestBody"]["content"].as_object().into_iter();
            let answers = op["responses"]
                .as_object()
                .expect("responses")
                .iter()
                .flat_map(|(status, r)| {
                    r["content"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(move |c| (status, c))
                });
            let bodies = request
                .flatten()
                .map(|c| ("request", c))
                .chain(answers.map(|(status, c)| (status.as_str(), c)));
            for (what, (media_type, body)) in bodies {
                let exemplified = body["example"] != Value::Null || body["examples"].is_object();
                if !exemplified {
                    missing.push(format!("{method} {path} {what} {media_type}: no example"));
                }
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));

    // the problems' shared examples exist and are the statuses they stand for
    for (name, example) in spec["components"]["examples"]
        .as_object()
        .expect("examples")
    {
        let status = name.trim_start_matches("Problem");
        assert_eq!(example["value"]["status"].to_string(), status, "{name}");
        assert!(example["value"]["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("/problems/")));
    }
}
