//! GET of one object: a consistent read from the store (resourceVersion "" ), or from the watch cache
//! when the client accepts any version ("0").

use axum::response::Response;

use super::{ListQuery, Scope, json_response};
use serde_json::json;

use crate::server::{ApiServer, object, status::ApiError, table};

/// Returns the object the scope names.
pub async fn get(api: &ApiServer, scope: &Scope, q: &ListQuery) -> Result<Response, ApiError> {
    let key = scope.key();
    let name = scope.name();
    let kv = match q.revision()? {
        // "0": any version will do, so the cache answers without touching the store.
        Some(0) => api.caches[scope.info.resource]
            .list(&key, 0)
            .await
            .map_err(ApiError::from_watch)?
            .and_then(|(items, _)| items.into_iter().find(|kv| kv.key == key))
            .map(|kv| crate::storage::KeyValue::clone(&kv)),
        Some(rev) => {
            api.store
                .get(&key, rev)
                .await
                .map_err(|e| ApiError::from_store(e, &scope.info.qualified(), name))?
                .0
        }
        None => {
            api.store
                .get(&key, 0)
                .await
                .map_err(|e| ApiError::from_store(e, &scope.info.qualified(), name))?
                .0
        }
    };
    let kv = kv.ok_or_else(|| ApiError::not_found(&scope.info.qualified(), name))?;
    let obj = object::decode(scope.info, &kv);
    if scope.subresource.as_deref() == Some("scale") {
        return Ok(json_response(200, &super::update::scale_of(&obj)));
    }
    if q.metadata_only {
        return Ok(json_response(200, &object::partial_metadata(&obj)));
    }
    if let Some(include) = q.table {
        let meta = json!({ "resourceVersion": obj["metadata"]["resourceVersion"] });
        return Ok(json_response(
            200,
            &table::table(scope.info, &[obj], meta, include, true),
        ));
    }
    Ok(json_response(200, &obj))
}
