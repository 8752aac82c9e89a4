//! Who is asking, and may they: the sim API server's authentication and RBAC.
//!
//! Why: a real API server answers a missing or wrong token with 401, a missing permission with
//! 403 naming the verb, resource and namespace, and `kubectl auth can-i` with what a
//! SelfSubjectAccessReview says. faultline's preflight, its error lines and the shipped
//! `deploy/rbac.yaml` can only be tested against a server that does the same.
//!
//! Identity: a bearer token (the sim's own admin token, written into its kubeconfig, or a
//! token of a user in the policy), else a client certificate signed by the sim's CA (user = the
//! common name, groups = the organizations, as Kubernetes reads them). Neither: 401.
//!
//! Permissions: the admin user (`faultline-sim`) and group `system:masters` may do everything.
//! Everyone else has exactly the Role-style rules the policy gives their user name and groups.
//! Without a policy every authenticated identity may do everything (the sim's old behaviour).
//! Discovery, `/version`, OpenAPI and SelfSubjectAccessReview are open to every authenticated
//! identity, as `system:discovery` and `system:basic-user` make them on a real cluster.
//!
//! The policy file (`faultline sim --kube-rbac FILE`), YAML:
//!
//! ```yaml
//! users:
//!   - name: alice            # the user name (a client certificate's CN matches it too)
//!     token: alice-secret    # optional bearer token that authenticates as this user
//!     groups: [sre]
//!     rules:                 # as in a Role; `namespaces` absent = every namespace
//!       - {apiGroups: [""], resources: [pods], verbs: [list, watch], namespaces: [default]}
//! groups:
//!   - {name: sre, rules: [...]}
//! ```
//!
//! [`Policy::from_rbac_manifests`] reads real RBAC objects (Role, ClusterRole, RoleBinding,
//! ClusterRoleBinding) instead, so a test can load a shipped manifest as it is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Value, json};

/// The sim's built-in administrator (its kubeconfig's user).
pub const ADMIN_USER: &str = "faultline-sim";

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read the RBAC policy {path:?}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("RBAC policy {path:?}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// One rule, as in a Role (plus the namespaces it applies in; `None` = all).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    #[serde(default)]
    pub api_groups: Vec<String>,
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub verbs: Vec<String>,
    #[serde(default)]
    pub resource_names: Vec<String>,
    #[serde(default)]
    pub namespaces: Option<Vec<String>>,
}

fn has(list: &[String], v: &str) -> bool {
    list.iter().any(|x| x == "*" || x == v)
}

impl Rule {
    fn allows(&self, a: &Attributes) -> bool {
        has(&self.verbs, &a.verb)
            && has(&self.api_groups, &a.group)
            && has(&self.resources, &a.resource)
            && (self.resource_names.is_empty()
                || a.name
                    .as_deref()
                    .is_some_and(|n| has(&self.resource_names, n)))
            && match (&self.namespaces, &a.namespace) {
                (None, _) => true,
                (Some(nss), Some(ns)) => has(nss, ns),
                // A rule limited to namespaces never grants a cluster-wide request.
                (Some(_), None) => false,
            }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserSpec {
    name: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    rules: Vec<Rule>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupSpec {
    name: String,
    #[serde(default)]
    rules: Vec<Rule>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    users: Vec<UserSpec>,
    #[serde(default)]
    groups: Vec<GroupSpec>,
}

/// Tokens and rules. `Default` is the empty policy: nobody but the admin may do anything.
#[derive(Clone, Default)]
pub struct Policy {
    /// token → (user, groups)
    tokens: BTreeMap<String, (String, Vec<String>)>,
    user_rules: BTreeMap<String, Vec<Rule>>,
    group_rules: BTreeMap<String, Vec<Rule>>,
}

/// Without the tokens: they are secrets.
impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("tokens", &self.tokens.len())
            .field("user_rules", &self.user_rules)
            .field("group_rules", &self.group_rules)
            .finish()
    }
}

/// An authenticated identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

/// What a request asks to do, as an authorizer sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attributes {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl Policy {
    /// Reads a policy file (format in the module docs).
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Policy::parse(&text).map_err(|message| PolicyError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses a policy (format in the module docs).
    pub fn parse(text: &str) -> Result<Policy, String> {
        let docs = yaml_documents(text)?;
        let doc = docs.into_iter().next().unwrap_or(json!({}));
        let file: PolicyFile = serde_json::from_value(doc).map_err(|e| e.to_string())?;
        let mut p = Policy::default();
        for u in file.users {
            if let Some(t) = u.token {
                if t.is_empty() {
                    return Err(format!("user \"{}\": an empty token", u.name));
                }
                p.tokens.insert(t, (u.name.clone(), u.groups.clone()));
            }
            p.user_rules.entry(u.name).or_default().extend(u.rules);
        }
        for g in file.groups {
            p.group_rules.entry(g.name).or_default().extend(g.rules);
        }
        Ok(p)
    }

    /// Adds a bearer token for `user`.
    pub fn add_token(&mut self, token: &str, user: &str, groups: &[&str]) {
        self.tokens.insert(
            token.to_string(),
            (
                user.to_string(),
                groups.iter().map(|g| g.to_string()).collect(),
            ),
        );
    }

    /// Grants `rules` to `user`.
    pub fn grant(&mut self, user: &str, rules: Vec<Rule>) {
        self.user_rules
            .entry(user.to_string())
            .or_default()
            .extend(rules);
    }

    /// The rules that real RBAC objects (multi-document YAML: Role, ClusterRole, RoleBinding,
    /// ClusterRoleBinding; other kinds are skipped) grant, each to the user its binding names.
    /// A ServiceAccount subject is the user `system:serviceaccount:NS:NAME`; a Group subject
    /// gets group rules.
    pub fn from_rbac_manifests(text: &str) -> Result<Policy, String> {
        Policy::from_rbac_objects(&yaml_documents(text)?)
    }

    /// [`Policy::from_rbac_manifests`] for objects already parsed (as JSON).
    pub fn from_rbac_objects(docs: &[Value]) -> Result<Policy, String> {
        let mut roles: BTreeMap<(Option<String>, String), Vec<Rule>> = BTreeMap::new();
        let rules_of = |doc: &Value| -> Result<Vec<Rule>, String> {
            let mut rules: Vec<Rule> = serde_json::from_value(doc["rules"].clone())
                .map_err(|e| format!("{} rules: {e}", doc["metadata"]["name"]))?;
            for r in &mut rules {
                r.namespaces = None;
            }
            Ok(rules)
        };
        for d in docs {
            let name = d["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            match d["kind"].as_str() {
                Some("Role") => {
                    let ns = d["metadata"]["namespace"].as_str().unwrap_or("default");
                    roles.insert((Some(ns.to_string()), name), rules_of(d)?);
                }
                Some("ClusterRole") => {
                    roles.insert((None, name), rules_of(d)?);
                }
                _ => {}
            }
        }
        let mut p = Policy::default();
        for d in docs {
            let binding_ns = match d["kind"].as_str() {
                Some("RoleBinding") => Some(
                    d["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or("default")
                        .to_string(),
                ),
                Some("ClusterRoleBinding") => None,
                _ => continue,
            };
            let role_ref = &d["roleRef"];
            let role_name = role_ref["name"].as_str().unwrap_or_default().to_string();
            let key = match role_ref["kind"].as_str() {
                Some("Role") => (binding_ns.clone(), role_name),
                Some("ClusterRole") => (None, role_name),
                other => return Err(format!("roleRef kind {other:?} is not Role/ClusterRole")),
            };
            let Some(rules) = roles.get(&key) else {
                return Err(format!("binding refers to missing role {key:?}"));
            };
            // A RoleBinding grants only in its namespace, even for a ClusterRole.
            let rules: Vec<Rule> = rules
                .iter()
                .cloned()
                .map(|mut r| {
                    r.namespaces = binding_ns.clone().map(|ns| vec![ns]);
                    r
                })
                .collect();
            for s in d["subjects"].as_array().into_iter().flatten() {
                let sname = s["name"].as_str().unwrap_or_default();
                match s["kind"].as_str() {
                    Some("ServiceAccount") => {
                        let ns = s["namespace"]
                            .as_str()
                            .or(binding_ns.as_deref())
                            .unwrap_or("default");
                        p.grant(
                            &format!("system:serviceaccount:{ns}:{sname}"),
                            rules.clone(),
                        );
                    }
                    Some("User") => p.grant(sname, rules.clone()),
                    Some("Group") => p
                        .group_rules
                        .entry(sname.to_string())
                        .or_default()
                        .extend(rules.clone()),
                    _ => {}
                }
            }
        }
        Ok(p)
    }

    /// Merges `other`'s tokens and rules into this policy.
    pub fn merge(&mut self, other: Policy) {
        self.tokens.extend(other.tokens);
        for (u, r) in other.user_rules {
            self.user_rules.entry(u).or_default().extend(r);
        }
        for (g, r) in other.group_rules {
            self.group_rules.entry(g).or_default().extend(r);
        }
    }

    pub(crate) fn token_identity(&self, token: &str) -> Option<Identity> {
        self.tokens.get(token).map(|(user, groups)| Identity {
            user: user.clone(),
            groups: groups.clone(),
        })
    }

    pub(crate) fn allows(&self, who: &Identity, a: &Attributes) -> bool {
        if who.user == ADMIN_USER || who.groups.iter().any(|g| g == "system:masters") {
            return true;
        }
        let by_user = self.user_rules.get(&who.user).into_iter().flatten();
        let by_group = who
            .groups
            .iter()
            .filter_map(|g| self.group_rules.get(g))
            .flatten();
        by_user.chain(by_group).any(|r| r.allows(a))
    }
}

/// The authenticator and authorizer of one API server.
pub struct Auth {
    pub admin_token: String,
    /// `None`: every authenticated identity may do everything.
    pub policy: Option<Policy>,
}

impl Auth {
    /// Who sent this request: its bearer token, else its client certificate (DER, already
    /// verified against the sim's CA by the TLS layer).
    pub fn identify(&self, bearer: Option<&str>, peer_cert: Option<&[u8]>) -> Option<Identity> {
        if let Some(token) = bearer {
            if token == self.admin_token {
                return Some(Identity {
                    user: ADMIN_USER.to_string(),
                    groups: vec!["system:authenticated".into()],
                });
            }
            return self.policy.as_ref()?.token_identity(token).map(|mut i| {
                i.groups.push("system:authenticated".into());
                i
            });
        }
        let (user, mut groups) = cert_identity(peer_cert?)?;
        groups.push("system:authenticated".into());
        Some(Identity { user, groups })
    }

    pub fn allows(&self, who: &Identity, a: &Attributes) -> bool {
        match &self.policy {
            None => true,
            Some(p) => p.allows(who, a),
        }
    }
}

/// (CN, [O…]) of a DER certificate.
fn cert_identity(der: &[u8]) -> Option<(String, Vec<String>)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let user = subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|a| a.as_str().ok())
        .map(str::to_string)
        .collect();
    Some((user, groups))
}

/// The request's attributes, for resource paths (`/api/v1/...`, `/apis/G/V/...`); `None` for
/// non-resource paths (discovery, version, OpenAPI).
pub fn attributes(method: &str, path: &str, query: Option<&str>) -> Option<Attributes> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", g, _v, rest @ ..] => (*g, rest),
        _ => return None,
    };
    let (namespace, resource, name) = match rest {
        ["namespaces", ns] => (None, "namespaces".to_string(), Some(ns.to_string())),
        ["namespaces", ns, r] => (Some(ns.to_string()), r.to_string(), None),
        ["namespaces", ns, r, n] => (Some(ns.to_string()), r.to_string(), Some(n.to_string())),
        // A subresource: RBAC names it `pods/eviction`.
        ["namespaces", ns, r, n, sub, ..] => (
            Some(ns.to_string()),
            format!("{r}/{sub}"),
            Some(n.to_string()),
        ),
        [r] => (None, r.to_string(), None),
        [r, n] => (None, r.to_string(), Some(n.to_string())),
        [r, n, sub, ..] => (None, format!("{r}/{sub}"), Some(n.to_string())),
        [] => return None,
    };
    let watch = query.is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
    let verb = match (method, &name) {
        ("GET", _) if watch => "watch",
        ("GET", Some(_)) => "get",
        ("GET", None) => "list",
        ("POST", _) => "create",
        ("DELETE", Some(_)) => "delete",
        ("DELETE", None) => "deletecollection",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        _ => "unknown",
    };
    Some(Attributes {
        verb: verb.to_string(),
        group: group.to_string(),
        resource,
        namespace,
        name,
    })
}

/// The 401 a real API server sends.
pub fn unauthorized() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
}

/// The 403 a real API server sends, with its exact message.
pub fn forbidden(who: &Identity, a: &Attributes) -> Value {
    let gr = if a.group.is_empty() {
        a.resource.clone()
    } else {
        format!("{}.{}", a.resource, a.group)
    };
    let object = match &a.name {
        Some(n) => format!("{gr} \"{n}\""),
        None => gr,
    };
    let scope = match &a.namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_string(),
    };
    let message = format!(
        "{object} is forbidden: User \"{}\" cannot {} resource \"{}\" in API group \"{}\" {scope}",
        who.user, a.verb, a.resource, a.group
    );
    let mut details = json!({"kind": a.resource, "group": a.group});
    if let Some(n) = &a.name {
        details["name"] = json!(n);
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": "Forbidden", "details": details, "code": 403})
}

/// A SelfSubjectAccessReview answered for `who`.
pub fn review(auth: &Auth, who: &Identity, body: &Value) -> Result<Value, String> {
    let ra = &body["spec"]["resourceAttributes"];
    if !ra.is_object() {
        // Non-resource URLs (`kubectl auth can-i get /healthz`): discovery-like, allowed.
        let mut out = body.clone();
        out["status"] = json!({"allowed": body["spec"]["nonResourceAttributes"].is_object()});
        return Ok(out);
    }
    let s = |k: &str| ra[k].as_str().unwrap_or_default().to_string();
    let a = Attributes {
        verb: s("verb"),
        group: s("group"),
        // `kubectl auth can-i create pods/eviction` sends resource + subresource; rules name
        // them together.
        resource: match s("subresource") {
            sub if sub.is_empty() => s("resource"),
            sub => format!("{}/{sub}", s("resource")),
        },
        namespace: ra["namespace"]
            .as_str()
            .filter(|n| !n.is_empty())
            .map(str::to_string),
        name: ra["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .map(str::to_string),
    };
    if a.verb.is_empty() || a.resource.is_empty() {
        return Err("spec.resourceAttributes needs verb and resource".into());
    }
    let allowed = auth.allows(who, &a);
    let mut out = body.clone();
    out["apiVersion"] = json!("authorization.k8s.io/v1");
    out["kind"] = json!("SelfSubjectAccessReview");
    out["metadata"] = json!({"creationTimestamp": null});
    out["status"] = if allowed {
        json!({"allowed": true, "reason": "allowed by the sim's RBAC policy"})
    } else {
        json!({"allowed": false})
    };
    Ok(out)
}

/// A SelfSubjectAccessReview sent as Kubernetes protobuf (what kubectl's typed clients send:
/// `k8s\0` + `runtime.Unknown{raw}`), as the JSON `review` reads. Only the fields a review
/// needs are decoded: `spec.resourceAttributes` (namespace, verb, group, version, resource,
/// subresource, name) and whether `spec.nonResourceAttributes` is there.
pub fn review_from_protobuf(body: &[u8]) -> Result<Value, String> {
    let unknown = body
        .strip_prefix(b"k8s\0")
        .ok_or("not a Kubernetes protobuf envelope")?;
    let raw = proto_field(unknown, 2)?.ok_or("no raw object in the envelope")?;
    let spec = proto_field(raw, 2)?.ok_or("no spec")?;
    let mut out = json!({"apiVersion": "authorization.k8s.io/v1",
                         "kind": "SelfSubjectAccessReview", "spec": {}});
    if let Some(ra) = proto_field(spec, 1)? {
        let names = [
            "namespace",
            "verb",
            "group",
            "version",
            "resource",
            "subresource",
            "name",
        ];
        let mut attrs = serde_json::Map::new();
        for (i, key) in names.iter().enumerate() {
            if let Some(v) = proto_field(ra, i as u64 + 1)? {
                attrs.insert(key.to_string(), json!(String::from_utf8_lossy(v)));
            }
        }
        out["spec"]["resourceAttributes"] = Value::Object(attrs);
    }
    if proto_field(spec, 2)?.is_some() {
        out["spec"]["nonResourceAttributes"] = json!({});
    }
    Ok(out)
}

/// The last length-delimited field `number` of a protobuf message (other wire types skipped).
fn proto_field(mut buf: &[u8], number: u64) -> Result<Option<&[u8]>, String> {
    fn varint(buf: &mut &[u8]) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = buf.split_first().ok_or("truncated varint")?;
            *buf = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }
    let mut found = None;
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                varint(&mut buf)?;
            }
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                buf = buf.get(n..).ok_or("truncated fixed field")?;
            }
            2 => {
                let len = usize::try_from(varint(&mut buf)?).map_err(|e| e.to_string())?;
                let (v, rest) = (buf.get(..len).ok_or("truncated field")?, &buf[len..]);
                if field == number {
                    found = Some(v);
                }
                buf = rest;
            }
            w => return Err(format!("unsupported wire type {w}")),
        }
    }
    Ok(found)
}

/// Every document of a YAML text, as JSON.
pub fn yaml_documents(text: &str) -> Result<Vec<Value>, String> {
    use saphyr::LoadableYamlNode;
    let docs = saphyr::Yaml::load_from_str(text).map_err(|e| {
        format!(
            "line {} column {}: {}",
            e.marker().line(),
            e.marker().col() + 1,
            e.info()
        )
    })?;
    Ok(docs.iter().map(to_json).filter(|v| !v.is_null()).collect())
}

fn to_json(y: &saphyr::Yaml) -> Value {
    use saphyr::{Scalar, Yaml};
    match y {
        Yaml::Value(s) => match s {
            Scalar::Null => Value::Null,
            Scalar::Boolean(b) => json!(b),
            Scalar::Integer(i) => json!(i),
            Scalar::FloatingPoint(f) => json!(f.into_inner()),
            Scalar::String(s) => json!(s.as_ref()),
        },
        Yaml::Representation(s, _, _) => json!(s.as_ref()),
        Yaml::Sequence(items) => Value::Array(items.iter().map(to_json).collect()),
        Yaml::Mapping(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let key = match to_json(k) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Yaml::Tagged(_, inner) => to_json(inner),
        Yaml::Alias(_) | Yaml::BadValue => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(user: &str) -> Identity {
        Identity {
            user: user.into(),
            groups: vec![],
        }
    }

    #[test]
    fn request_paths_become_verbs_resources_and_namespaces() {
        let a = attributes("DELETE", "/api/v1/namespaces/default/pods/p1", None).unwrap();
        assert_eq!(
            (a.verb.as_str(), a.group.as_str(), a.resource.as_str()),
            ("delete", "", "pods")
        );
        assert_eq!(a.namespace.as_deref(), Some("default"));
        assert_eq!(a.name.as_deref(), Some("p1"));
        let w = attributes(
            "GET",
            "/apis/networking.k8s.io/v1/networkpolicies",
            Some("labelSelector=x&watch=true"),
        )
        .unwrap();
        assert_eq!(
            (w.verb.as_str(), w.group.as_str(), w.namespace),
            ("watch", "networking.k8s.io", None)
        );
        let ns = attributes("GET", "/api/v1/namespaces/default", None).unwrap();
        assert_eq!((ns.resource.as_str(), ns.namespace), ("namespaces", None));
        assert_eq!(ns.name.as_deref(), Some("default"));
        assert!(attributes("GET", "/apis/networking.k8s.io/v1", None).is_none());
        assert!(attributes("GET", "/version", None).is_none());
    }

    #[test]
    fn the_forbidden_message_is_the_real_servers() {
        let a = attributes("DELETE", "/api/v1/namespaces/default/pods/x", None).unwrap();
        let s = forbidden(&who("u"), &a);
        assert_eq!(
            s["message"],
            "pods \"x\" is forbidden: User \"u\" cannot delete resource \"pods\" in API group \"\" in the namespace \"default\""
        );
        assert_eq!(
            (s["code"].as_u64(), s["reason"].as_str()),
            (Some(403), Some("Forbidden"))
        );
        let a = attributes("GET", "/apis/networking.k8s.io/v1/networkpolicies", None).unwrap();
        assert_eq!(
            forbidden(&who("u"), &a)["message"],
            "networkpolicies.networking.k8s.io is forbidden: User \"u\" cannot list resource \"networkpolicies\" in API group \"networking.k8s.io\" at the cluster scope"
        );
    }

    #[test]
    fn policy_rules_grant_only_their_verbs_and_namespaces() {
        let p = Policy::parse(
            "users:\n  - name: alice\n    token: t-a\n    rules:\n      - {apiGroups: [\"\"], resources: [pods], verbs: [list], namespaces: [default]}\n",
        )
        .unwrap();
        let alice = p.token_identity("t-a").unwrap();
        assert_eq!(alice.user, "alice");
        let list = attributes("GET", "/api/v1/namespaces/default/pods", None).unwrap();
        let other_ns = attributes("GET", "/api/v1/namespaces/prod/pods", None).unwrap();
        let delete = attributes("DELETE", "/api/v1/namespaces/default/pods/x", None).unwrap();
        let all = attributes("GET", "/api/v1/pods", None).unwrap();
        assert!(p.allows(&alice, &list));
        assert!(!p.allows(&alice, &other_ns));
        assert!(!p.allows(&alice, &delete));
        assert!(!p.allows(&alice, &all));
        assert!(p.allows(&who(ADMIN_USER), &delete));
        assert!(Policy::parse("users: [{name: a, bogus: 1}]").is_err());
    }

    #[test]
    fn a_protobuf_access_review_decodes_to_its_attributes() {
        // k8s\0, Unknown{2: raw = SSAR{2: spec{1: ResourceAttributes{1: "default", 2: "delete",
        // 5: "pods"}}}}, built by hand.
        fn ld(field: u8, v: &[u8]) -> Vec<u8> {
            let mut o = vec![(field << 3) | 2, v.len() as u8];
            o.extend_from_slice(v);
            o
        }
        let ra = [ld(1, b"default"), ld(2, b"delete"), ld(5, b"pods")].concat();
        let ssar = ld(2, &ld(1, &ra));
        let mut body = b"k8s\0".to_vec();
        body.extend(ld(1, &ld(1, b"authorization.k8s.io/v1")));
        body.extend(ld(2, &ssar));
        let v = review_from_protobuf(&body).unwrap();
        let ra = &v["spec"]["resourceAttributes"];
        assert_eq!(
            (
                ra["namespace"].as_str(),
                ra["verb"].as_str(),
                ra["resource"].as_str()
            ),
            (Some("default"), Some("delete"), Some("pods"))
        );
        assert!(ra.get("group").is_none());
        assert!(review_from_protobuf(b"{}").is_err());
    }

    #[test]
    fn rbac_manifests_bind_role_rules_to_service_accounts() {
        let text = "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: r, namespace: ns1}\nrules:\n- {apiGroups: [\"\"], resources: [pods], verbs: [delete]}\n---\nkind: RoleBinding\nmetadata: {name: b, namespace: ns1}\nroleRef: {kind: Role, name: r}\nsubjects:\n- {kind: ServiceAccount, name: sa, namespace: ns1}\n";
        let p = Policy::from_rbac_manifests(text).unwrap();
        let sa = who("system:serviceaccount:ns1:sa");
        let del = |ns: &str| {
            attributes("DELETE", &format!("/api/v1/namespaces/{ns}/pods/x"), None).unwrap()
        };
        assert!(p.allows(&sa, &del("ns1")));
        assert!(!p.allows(&sa, &del("ns2")));
    }
}
