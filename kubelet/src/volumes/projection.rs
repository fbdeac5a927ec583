//! The payloads of configMap, secret, downwardAPI and projected volumes: which files with what content
//! and mode, as upstream's `MakePayload` functions (pkg/volume/configmap, secret, downwardapi,
//! projected) compute them. Pure: the objects come from [`Sources`].

use serde_json::Value;

use super::atomic_writer::{FileProjection, Payload};
use crate::envvars::{Fetched, ObjectData, Sources, field_value, find_container, resource_value};

/// The default file mode of these volumes (upstream `DefaultMode`: 0644).
pub const DEFAULT_MODE: u32 = 0o644;

fn mode(v: &Value) -> Option<u32> {
    v.as_u64().map(|m| m as u32 & 0o7777)
}

/// The files of a ConfigMap's or Secret's keys: every key (data, then binaryData) unless `items`
/// picks some (`key` to `path`, with its own `mode`). `kind` is `configmap` or `secret` for messages.
fn keys_payload(
    obj: &ObjectData,
    items: &Value,
    default_mode: u32,
    optional: bool,
    kind: &str,
    payload: &mut Payload,
) -> Result<(), String> {
    let get = |k: &str| obj.data.get(k).or_else(|| obj.binary_data.get(k));
    match items.as_array().filter(|i| !i.is_empty()) {
        None => {
            for (k, v) in obj.data.iter().chain(&obj.binary_data) {
                payload.insert(
                    k.clone(),
                    FileProjection {
                        data: v.clone(),
                        mode: default_mode,
                    },
                );
            }
        }
        Some(items) => {
            for item in items {
                let key = item["key"].as_str().unwrap_or_default();
                let Some(data) = get(key) else {
                    if optional {
                        continue;
                    }
                    return Err(match kind {
                        "configmap" => format!("configmap references non-existent config key: {key}"),
                        _ => format!("references non-existent secret key: {key}"),
                    });
                };
                let path = item["path"].as_str().unwrap_or(key).to_owned();
                payload.insert(
                    path,
                    FileProjection {
                        data: data.clone(),
                        mode: mode(&item["mode"]).unwrap_or(default_mode),
                    },
                );
            }
        }
    }
    Ok(())
}

/// Looks an object up: Some(data), None when missing and `optional`, the error otherwise.
fn lookup<'a>(
    fetched: Option<&'a Fetched>,
    optional: bool,
    what: &str,
) -> Result<Option<&'a ObjectData>, String> {
    match fetched {
        Some(Fetched::Found(o)) => Ok(Some(o)),
        Some(Fetched::NotFound(_)) if optional => Ok(None),
        Some(Fetched::NotFound(e) | Fetched::Failed(e)) => Err(e.clone()),
        None => Err(format!("{what} was not fetched")),
    }
}

/// A configMap volume source (`volumes[].configMap` or a projected `sources[].configMap`).
pub fn config_map(
    source: &Value,
    sources: &Sources,
    default_mode: u32,
    payload: &mut Payload,
) -> Result<(), String> {
    let name = source["name"].as_str().unwrap_or_default();
    let optional = source["optional"].as_bool().unwrap_or(false);
    let Some(obj) = lookup(sources.config_maps.get(name), optional, name)? else {
        return Ok(());
    };
    keys_payload(
        obj,
        &source["items"],
        default_mode,
        optional,
        "configmap",
        payload,
    )
}

/// A secret volume source (`secretName` in a volume, `name` in a projection).
pub fn secret(
    source: &Value,
    sources: &Sources,
    default_mode: u32,
    payload: &mut Payload,
) -> Result<(), String> {
    let name = source["secretName"]
        .as_str()
        .or_else(|| source["name"].as_str())
        .unwrap_or_default();
    let optional = source["optional"].as_bool().unwrap_or(false);
    let Some(obj) = lookup(sources.secrets.get(name), optional, name)? else {
        return Ok(());
    };
    keys_payload(obj, &source["items"], default_mode, optional, "secret", payload)
}

/// A downwardAPI source's items: a file per `fieldRef` or `resourceFieldRef`.
pub fn downward_api(
    source: &Value,
    pod: &Value,
    sources: &Sources,
    default_mode: u32,
    payload: &mut Payload,
) -> Result<(), String> {
    for item in source["items"].as_array().into_iter().flatten() {
        let path = item["path"].as_str().unwrap_or_default();
        let value = if let Some(field) = item["fieldRef"]["fieldPath"].as_str() {
            field_value(pod, field, sources, true)?
        } else if item["resourceFieldRef"].is_object() {
            let r = &item["resourceFieldRef"];
            let name = r["containerName"].as_str().unwrap_or_default();
            let c = find_container(pod, name).ok_or_else(|| format!("container {name} not found"))?;
            resource_value(c, r, sources)?
        } else {
            continue;
        };
        payload.insert(
            path.to_owned(),
            FileProjection {
                data: value.into_bytes(),
                mode: mode(&item["mode"]).unwrap_or(default_mode),
            },
        );
    }
    Ok(())
}

/// The payload of volume `volume` (its JSON) if it is one written by the atomic writer.
pub fn payload(volume: &Value, pod: &Value, sources: &Sources) -> Option<Result<Payload, String>> {
    let mut payload = Payload::new();
    let default_mode = |v: &Value| mode(&v["defaultMode"]).unwrap_or(DEFAULT_MODE);
    let result = if volume["configMap"].is_object() {
        let v = &volume["configMap"];
        config_map(v, sources, default_mode(v), &mut payload)
    } else if volume["secret"].is_object() {
        let v = &volume["secret"];
        secret(v, sources, default_mode(v), &mut payload)
    } else if volume["downwardAPI"].is_object() {
        let v = &volume["downwardAPI"];
        downward_api(v, pod, sources, default_mode(v), &mut payload)
    } else if volume["projected"].is_object() {
        let v = &volume["projected"];
        let mode = default_mode(v);
        (|| {
            for s in v["sources"].as_array().into_iter().flatten() {
                if s["configMap"].is_object() {
                    config_map(&s["configMap"], sources, mode, &mut payload)?;
                } else if s["secret"].is_object() {
                    secret(&s["secret"], sources, mode, &mut payload)?;
                } else if s["downwardAPI"].is_object() {
                    downward_api(&s["downwardAPI"], pod, sources, mode, &mut payload)?;
                }
                // serviceAccountToken and clusterTrustBundle sources are not projected (no token
                // issuer yet).
            }
            Ok(())
        })()
    } else {
        return None;
    };
    Some(result.map(|()| payload))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    fn sources() -> Sources {
        let obj = |pairs: &[(&str, &str)]| {
            Fetched::Found(ObjectData {
                data: pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                    .collect(),
                binary_data: BTreeMap::new(),
            })
        };
        Sources {
            config_maps: [("cm".to_owned(), obj(&[("a", "1"), ("b", "2")]))].into(),
            secrets: [
                ("s".to_owned(), obj(&[("pw", "x")])),
                (
                    "gone".to_owned(),
                    Fetched::NotFound("secret \"gone\" not found".into()),
                ),
            ]
            .into(),
            ..Default::default()
        }
    }

    fn files(p: &Payload) -> Vec<(String, String, u32)> {
        p.iter()
            .map(|(k, f)| (k.clone(), String::from_utf8_lossy(&f.data).into_owned(), f.mode))
            .collect()
    }

    #[test]
    fn payloads_follow_items_modes_and_optional() {
        let pod = json!({ "metadata": { "name": "p", "labels": { "x": "y" } },
                          "spec": { "containers": [{ "name": "c", "resources": { "limits": { "memory": "1Gi" } } }] } });
        let s = sources();
        let all = payload(&json!({ "configMap": { "name": "cm" } }), &pod, &s)
            .unwrap()
            .unwrap();
        assert_eq!(
            files(&all),
            vec![("a".into(), "1".into(), 0o644), ("b".into(), "2".into(), 0o644)]
        );
        let picked = payload(
            &json!({ "configMap": { "name": "cm", "defaultMode": 0o600, "items": [{ "key": "b", "path": "dir/b.txt", "mode": 0o400 }, { "key": "a", "path": "a" }] } }),
            &pod,
            &s,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            files(&picked),
            vec![
                ("a".into(), "1".into(), 0o600),
                ("dir/b.txt".into(), "2".into(), 0o400)
            ]
        );
        let missing = payload(
            &json!({ "configMap": { "name": "cm", "items": [{ "key": "z", "path": "z" }] } }),
            &pod,
            &s,
        );
        assert_eq!(
            missing.unwrap().unwrap_err(),
            "configmap references non-existent config key: z"
        );
        assert_eq!(
            payload(&json!({ "secret": { "secretName": "gone" } }), &pod, &s)
                .unwrap()
                .unwrap_err(),
            "secret \"gone\" not found"
        );
        assert!(
            payload(
                &json!({ "secret": { "secretName": "gone", "optional": true } }),
                &pod,
                &s
            )
            .unwrap()
            .unwrap()
            .is_empty()
        );
        let projected = payload(
            &json!({ "projected": { "defaultMode": 0o440, "sources": [
                { "secret": { "name": "s" } },
                { "downwardAPI": { "items": [
                    { "path": "labels", "fieldRef": { "fieldPath": "metadata.labels" } },
                    { "path": "mem", "resourceFieldRef": { "containerName": "c", "resource": "limits.memory", "divisor": "1Mi" } }
                ] } },
                { "serviceAccountToken": { "path": "token" } }
            ] } }),
            &pod,
            &s,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            files(&projected),
            vec![
                ("labels".into(), "x=\"y\"".into(), 0o440),
                ("mem".into(), "1024".into(), 0o440),
                ("pw".into(), "x".into(), 0o440)
            ]
        );
        assert!(payload(&json!({ "emptyDir": {} }), &pod, &s).is_none());
    }
}
