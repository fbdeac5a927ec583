//! Pod volumes and the mounts that use them (`ValidateVolumes`, `validateVolumeSource`,
//! `ValidateVolumeMounts`, `ValidateVolumeDevices` and the downward API in upstream's
//! `pkg/apis/core/validation/validation.go`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::container::{object_field_selector, resource_field_selector};
use super::field::{
    Errs, Path, at, forbidden, get, has, int_of, invalid, list, not_found, not_supported, required, str_of,
    text,
};
use super::names::dns1123_label;
use super::quantity;

/// Valid volumes by name (what mounts may refer to).
pub type Volumes<'a> = BTreeMap<String, &'a Value>;

const FILE_MODE_MSG: &str = "must be a number between 0 and 0777 (octal), both inclusive";

/// Volume sources in upstream's checking order: (JSON key, path printed when a second one is set).
const SOURCES: &[(&str, &str)] = &[
    ("emptyDir", "emptyDir"),
    ("hostPath", "hostPath"),
    ("gitRepo", "gitRepo"),
    ("gcePersistentDisk", "gcePersistentDisk"),
    ("awsElasticBlockStore", "awsElasticBlockStore"),
    ("secret", "secret"),
    ("nfs", "nfs"),
    ("iscsi", "iscsi"),
    ("glusterfs", "glusterfs"),
    ("flocker", "flocker"),
    ("persistentVolumeClaim", "persistentVolumeClaim"),
    ("rbd", "rbd"),
    ("cinder", "cinder"),
    ("cephfs", "cephFS"),
    ("quobyte", "quobyte"),
    // Upstream's path really is misspelt.
    ("downwardAPI", "downwarAPI"),
    ("fc", "fc"),
    ("flexVolume", "flexVolume"),
    ("configMap", "configMap"),
    ("azureFile", "azureFile"),
    ("vsphereVolume", "vsphereVolume"),
    ("photonPersistentDisk", "photonPersistentDisk"),
    ("portworxVolume", "portworxVolume"),
    ("azureDisk", "azureDisk"),
    ("storageos", "storageos"),
    ("projected", "projected"),
    ("scaleIO", "scaleIO"),
    ("csi", "csi"),
    ("ephemeral", "ephemeral"),
    ("image", "image"),
];

/// `ValidateVolumes`: names are unique DNS labels and each volume has exactly one source. A volume
/// with errors is left out of the result, so mounts of it are reported as not found too (as upstream).
pub fn volumes<'a>(vols: &'a [Value], path: &Path, is_pod: bool, errs: &mut Errs) -> Volumes<'a> {
    let mut valid = Volumes::new();
    let mut names = BTreeSet::new();
    for (i, vol) in vols.iter().enumerate() {
        let p = path.index(i);
        let name = text(vol, "name");
        let mut el = source(vol, &p, is_pod);
        if name.is_empty() {
            el.push(required(&p.child("name"), ""));
        } else {
            el.extend(
                dns1123_label(&name)
                    .iter()
                    .map(|m| invalid(&p.child("name"), name.as_str(), m)),
            );
        }
        if names.contains(&name) {
            el.push(super::field::duplicate(&p.child("name"), name.as_str()));
        }
        if el.is_empty() {
            names.insert(name.clone());
            valid.insert(name, vol);
        } else {
            errs.extend(el);
        }
    }
    valid
}

fn source(vol: &Value, p: &Path, is_pod: bool) -> Errs {
    let mut errs = Errs::new();
    let mut count = 0;
    for (key, printed) in SOURCES {
        let Some(src) = get(vol, key) else { continue };
        if count > 0 {
            errs.push(forbidden(
                &p.child(printed),
                "may not specify more than 1 volume type",
            ));
            continue;
        }
        count += 1;
        let sp = p.child(key);
        match *key {
            "emptyDir" => {
                if let Some(limit) = get(src, "sizeLimit") {
                    match quantity::from_json(limit) {
                        Ok(q) if q.is_negative() => errs.push(forbidden(
                            &sp.child("sizeLimit"),
                            "SizeLimit field must be a valid resource quantity",
                        )),
                        Ok(_) => {}
                        Err(msg) => errs.push(invalid(
                            &sp.child("sizeLimit"),
                            super::field::scalar_text(limit),
                            msg,
                        )),
                    }
                }
            }
            "hostPath" => host_path(src, &sp, &mut errs),
            "gitRepo" => {
                if text(src, "repository").is_empty() {
                    errs.push(required(&sp.child("repository"), ""));
                }
                local_descending_path(&text(src, "directory"), &sp.child("directory"), &mut errs);
            }
            "secret" => {
                if text(src, "secretName").is_empty() {
                    errs.push(required(&sp.child("secretName"), ""));
                }
                file_mode(src, "defaultMode", &sp, &mut errs);
                for (j, item) in list(src, "items").iter().enumerate() {
                    key_to_path(item, &sp.child("items").index(j), &mut errs);
                }
            }
            "configMap" => {
                if text(src, "name").is_empty() {
                    errs.push(required(&sp.child("name"), ""));
                }
                file_mode(src, "defaultMode", &sp, &mut errs);
                for (j, item) in list(src, "items").iter().enumerate() {
                    key_to_path(item, &sp.child("items").index(j), &mut errs);
                }
            }
            "persistentVolumeClaim" if text(src, "claimName").is_empty() => {
                errs.push(required(&sp.child("claimName"), ""));
            }
            "nfs" => {
                if text(src, "server").is_empty() {
                    errs.push(required(&sp.child("server"), ""));
                }
                let path = text(src, "path");
                if path.is_empty() {
                    errs.push(required(&sp.child("path"), ""));
                }
                if !path.starts_with('/') {
                    errs.push(invalid(
                        &sp.child("path"),
                        path.as_str(),
                        "must be an absolute path",
                    ));
                }
            }
            "downwardAPI" => {
                file_mode(src, "defaultMode", &sp, &mut errs);
                for item in list(src, "items") {
                    downward_api_file(item, &sp, &mut errs);
                }
            }
            "projected" => {
                projected(src, &sp, &mut errs);
                file_mode(src, "defaultMode", &sp, &mut errs);
            }
            "csi" if text(src, "driver").is_empty() => errs.push(required(&sp.child("driver"), "")),
            "ephemeral" if !has(src, "volumeClaimTemplate") => {
                errs.push(required(&sp.child("volumeClaimTemplate"), ""));
            }
            "image" if is_pod && text(src, "reference").is_empty() => {
                errs.push(required(&sp.child("reference"), ""));
            }
            _ => {}
        }
    }
    if count == 0 {
        errs.push(required(p, "must specify a volume type"));
    }
    errs
}

fn host_path(src: &Value, p: &Path, errs: &mut Errs) {
    let path = text(src, "path");
    if path.is_empty() {
        errs.push(required(&p.child("path"), ""));
        return;
    }
    no_backsteps(&path, &p.child("path"), errs);
    if let Some(t) = str_of(src, "type") {
        const TYPES: &[&str] = &[
            "",
            "BlockDevice",
            "CharDevice",
            "Directory",
            "DirectoryOrCreate",
            "File",
            "FileOrCreate",
            "Socket",
        ];
        if !TYPES.contains(&t) {
            errs.push(not_supported(&p.child("type"), t, TYPES));
        }
    }
}

fn file_mode(src: &Value, key: &str, p: &Path, errs: &mut Errs) {
    if let Some(mode) = int_of(src, key).filter(|m| !(0..=0o777).contains(m)) {
        errs.push(invalid(&p.child(key), mode, FILE_MODE_MSG));
    }
}

/// `validateKeyToPath` (ConfigMap and Secret volume items).
fn key_to_path(item: &Value, p: &Path, errs: &mut Errs) {
    if text(item, "key").is_empty() {
        errs.push(required(&p.child("key"), ""));
    }
    let path = text(item, "path");
    if path.is_empty() {
        errs.push(required(&p.child("path"), ""));
    }
    local_non_reserved_path(&path, &p.child("path"), errs);
    file_mode(item, "mode", p, errs);
}

fn projected(src: &Value, p: &Path, errs: &mut Errs) {
    let mut paths = BTreeSet::new();
    for (i, source) in list(src, "sources").iter().enumerate() {
        let sp = p.child("sources").index(i);
        let mut count = 0;
        for key in ["secret", "configMap"] {
            let Some(s) = get(source, key) else { continue };
            count += 1;
            let name = text(s, "name");
            if name.is_empty() {
                errs.push(required(&sp.child(key).child("name"), ""));
            }
            for (j, item) in list(s, "items").iter().enumerate() {
                key_to_path(item, &sp.child(key).child("items").index(j), errs);
                let path = text(item, "path");
                if !path.is_empty() && !paths.insert(path) {
                    errs.push(invalid(p, name.as_str(), "conflicting duplicate paths"));
                }
            }
        }
        if let Some(d) = get(source, "downwardAPI") {
            count += 1;
            for item in list(d, "items") {
                downward_api_file(item, &sp.child("downwardAPI"), errs);
                let path = text(item, "path");
                if !path.is_empty() && !paths.insert(path.clone()) {
                    errs.push(invalid(p, path.as_str(), "conflicting duplicate paths"));
                }
            }
        }
        if let Some(t) = get(source, "serviceAccountToken") {
            count += 1;
            let tp = sp.child("serviceAccountToken");
            let seconds = int_of(t, "expirationSeconds").unwrap_or(3600);
            if seconds < 600 {
                errs.push(invalid(
                    &tp.child("expirationSeconds"),
                    seconds,
                    "may not specify a duration less than 10 minutes",
                ));
            }
            if seconds > 1 << 32 {
                errs.push(invalid(
                    &tp.child("expirationSeconds"),
                    seconds,
                    "may not specify a duration larger than 2^32 seconds",
                ));
            }
            if text(t, "path").is_empty() {
                errs.push(required(&p.child("path"), ""));
            }
        }
        count += ["clusterTrustBundle", "podCertificate"]
            .iter()
            .filter(|k| has(source, k))
            .count();
        if count > 1 {
            errs.push(forbidden(
                &sp,
                "may not specify more than 1 volume type per source",
            ));
        }
    }
}

/// The fields a downward API volume may project.
const VOLUME_FIELD_PATHS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
];

fn downward_api_file(file: &Value, p: &Path, errs: &mut Errs) {
    let path = text(file, "path");
    if path.is_empty() {
        errs.push(required(&p.child("path"), ""));
    }
    local_non_reserved_path(&path, &p.child("path"), errs);
    if let Some(fr) = get(file, "fieldRef") {
        object_field_selector(fr, VOLUME_FIELD_PATHS, &p.child("fieldRef"), errs);
        if has(file, "resourceFieldRef") {
            errs.push(invalid(
                p,
                "resource",
                "fieldRef and resourceFieldRef can not be specified simultaneously",
            ));
        }
    } else if let Some(rf) = get(file, "resourceFieldRef") {
        resource_field_selector(rf, &p.child("resourceFieldRef"), true, errs);
    } else {
        errs.push(required(p, "one of fieldRef and resourceFieldRef is required"));
    }
    file_mode(file, "mode", p, errs);
}

/// `validatePathNoBacksteps`.
pub fn no_backsteps(target: &str, p: &Path, errs: &mut Errs) {
    if target.split('/').any(|part| part == "..") {
        errs.push(invalid(p, target, "must not contain '..'"));
    }
}

/// `validateLocalDescendingPath`: relative, without `..`.
pub fn local_descending_path(target: &str, p: &Path, errs: &mut Errs) {
    if target.starts_with('/') {
        errs.push(invalid(p, target, "must be a relative path"));
    }
    no_backsteps(target, p, errs);
}

/// `ValidateLocalNonReservedPath`: also not starting with `..`.
fn local_non_reserved_path(target: &str, p: &Path, errs: &mut Errs) {
    local_descending_path(target, p, errs);
    if target.starts_with("..") && !target.starts_with("../") {
        errs.push(invalid(p, target, "must not start with '..'"));
    }
}

/// `ValidateVolumeMounts`: each names an existing volume, at a unique path.
pub fn volume_mounts(container: &Value, vols: &Volumes, path: &Path, errs: &mut Errs) {
    let devices: BTreeMap<String, String> = list(container, "volumeDevices")
        .iter()
        .map(|d| (text(d, "name"), text(d, "devicePath")))
        .collect();
    let mut mount_points = BTreeSet::new();
    for (i, m) in list(container, "volumeMounts").iter().enumerate() {
        let p = path.index(i);
        let name = text(m, "name");
        let mount_path = text(m, "mountPath");
        if name.is_empty() {
            errs.push(required(&p.child("name"), ""));
        }
        if !vols.contains_key(&name) {
            errs.push(not_found(&p.child("name"), name.as_str()));
        }
        if mount_path.is_empty() {
            errs.push(required(&p.child("mountPath"), ""));
        }
        if !mount_points.insert(mount_path.clone()) {
            errs.push(invalid(
                &p.child("mountPath"),
                mount_path.as_str(),
                "must be unique",
            ));
        }
        if devices.contains_key(&name) {
            errs.push(invalid(
                &p.child("name"),
                name.as_str(),
                "must not already exist in volumeDevices",
            ));
        }
        if devices.values().any(|d| *d == mount_path) {
            errs.push(invalid(
                &p.child("mountPath"),
                mount_path.as_str(),
                "must not already exist as a path in volumeDevices",
            ));
        }
        let sub_path = text(m, "subPath");
        let sub_path_expr = text(m, "subPathExpr");
        if vols.get(&name).is_some_and(|v| has(v, "image")) {
            if !sub_path.is_empty() {
                errs.push(invalid(
                    &p.child("subPath"),
                    sub_path.as_str(),
                    "not allowed in image volume sources",
                ));
            }
            if !sub_path_expr.is_empty() {
                errs.push(invalid(
                    &p.child("subPathExpr"),
                    sub_path_expr.as_str(),
                    "not allowed in image volume sources",
                ));
            }
        }
        // Upstream prints these two under the list's path, without the index.
        if !sub_path.is_empty() {
            local_descending_path(&sub_path, &path.child("subPath"), errs);
        }
        if !sub_path_expr.is_empty() {
            if !sub_path.is_empty() {
                errs.push(invalid(
                    &p.child("subPathExpr"),
                    sub_path_expr.as_str(),
                    "subPathExpr and subPath are mutually exclusive",
                ));
            }
            local_descending_path(&sub_path_expr, &path.child("subPathExpr"), errs);
        }
        if let Some(prop) = str_of(m, "mountPropagation") {
            let pp = path.child("mountPropagation");
            if !["Bidirectional", "HostToContainer", "None"].contains(&prop) {
                errs.push(not_supported(
                    &pp,
                    prop,
                    &["Bidirectional", "HostToContainer", "None"],
                ));
            } else if prop == "Bidirectional"
                && !at(at(container, "securityContext"), "privileged")
                    .as_bool()
                    .unwrap_or(false)
            {
                errs.push(forbidden(
                    &pp,
                    "Bidirectional mount propagation is available only to privileged containers",
                ));
            }
        }
    }
}

/// `ValidateVolumeDevices`: raw block devices come from PVC-backed volumes.
pub fn volume_devices(container: &Value, vols: &Volumes, path: &Path, errs: &mut Errs) {
    let mounts: BTreeMap<String, String> = list(container, "volumeMounts")
        .iter()
        .map(|m| (text(m, "name"), text(m, "mountPath")))
        .collect();
    let (mut names, mut paths) = (BTreeSet::new(), BTreeSet::new());
    for (i, d) in list(container, "volumeDevices").iter().enumerate() {
        let p = path.index(i);
        let (name, device_path) = (text(d, "name"), text(d, "devicePath"));
        let source = vols.get(&name);
        if name.is_empty() {
            errs.push(required(&p.child("name"), ""));
        }
        if names.contains(&name) {
            errs.push(invalid(&p.child("name"), name.as_str(), "must be unique"));
        }
        if source.is_some_and(|v| !has(v, "persistentVolumeClaim") && !has(v, "ephemeral")) {
            errs.push(invalid(
                &p.child("name"),
                name.as_str(),
                "can only use volume source type of PersistentVolumeClaim or Ephemeral for block mode",
            ));
        }
        if source.is_none() {
            errs.push(not_found(&p.child("name"), name.as_str()));
        }
        if device_path.is_empty() {
            errs.push(required(&p.child("devicePath"), ""));
        }
        if paths.contains(&device_path) {
            errs.push(invalid(
                &p.child("devicePath"),
                device_path.as_str(),
                "must be unique",
            ));
        }
        if !device_path.is_empty() && device_path.split('/').any(|part| part == "..") {
            errs.push(invalid(
                &p.child("devicePath"),
                device_path.as_str(),
                "can not contain backsteps ('..')",
            ));
        } else {
            paths.insert(device_path.clone());
        }
        if mounts.contains_key(&name) {
            errs.push(invalid(
                &p.child("name"),
                name.as_str(),
                "must not already exist in volumeMounts",
            ));
        }
        if mounts.values().any(|m| *m == device_path) {
            errs.push(invalid(
                &p.child("devicePath"),
                device_path.as_str(),
                "must not already exist as a path in volumeMounts",
            ));
        }
        if !name.is_empty() {
            names.insert(name);
        }
    }
}
