//! Authentication (client certificates from the cluster CA, bearer tokens from a token file)
//! and RBAC authorization over the Role/ClusterRole/binding objects in the watch caches.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

/// Who a request comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

impl User {
    pub fn is_in(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// The user (CN) and groups (O) of a client certificate, as Kubernetes reads them.
pub fn identity_from_certificate(der: &[u8]) -> Option<(String, Vec<String>)> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = certificate.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    let groups =
        subject.iter_organization().filter_map(|o| o.as_str().ok().map(str::to_string)).collect();
    Some((name, groups))
}

/// Static bearer tokens (kube-apiserver's `--token-auth-file`): `token,user,uid,"g1,g2"`.
#[derive(Clone, Debug, Default)]
pub struct TokenFile {
    users: HashMap<String, User>,
}

impl TokenFile {
    pub fn load(path: &Path) -> Result<TokenFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read --token-auth-file {}: {e}", path.display()))?;
        TokenFile::parse(&text).map_err(|e| format!("--token-auth-file {}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<TokenFile, String> {
        let mut users = HashMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields = split_csv(line);
            if fields.len() < 3 || fields[0].is_empty() || fields[1].is_empty() {
                return Err(format!(
                    "line {}: want token,user,uid[,\"group1,group2\"]",
                    number + 1
                ));
            }
            let groups = fields
                .get(3)
                .map(|g| g.split(',').map(str::trim).filter(|g| !g.is_empty()))
                .into_iter()
                .flatten()
                .map(str::to_string)
                .collect();
            users.insert(fields[0].clone(), User { name: fields[1].clone(), groups });
        }
        Ok(TokenFile { users })
    }

    pub fn user(&self, token: &str) -> Option<&User> {
        self.users.get(token)
    }
}

/// Splits one CSV line, honouring double quotes.
fn split_csv(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            c => fields.last_mut().expect("at least one field").push(c),
        }
    }
    fields.into_iter().map(|f| f.trim().to_string()).collect()
}

/// What a request asks to do, in RBAC's terms.
#[derive(Clone, Debug)]
pub enum Attributes<'a> {
    Resource {
        verb: &'a str,
        group: &'a str,
        /// `pods`, or `pods/status` for a subresource.
        resource: String,
        namespace: Option<&'a str>,
        name: Option<&'a str>,
    },
    NonResource {
        verb: &'a str,
        path: &'a str,
    },
}

/// The RBAC objects an authorization decision reads.
#[derive(Default)]
pub struct RbacView {
    pub roles: Vec<std::sync::Arc<Value>>,
    pub cluster_roles: Vec<std::sync::Arc<Value>>,
    pub role_bindings: Vec<std::sync::Arc<Value>>,
    pub cluster_role_bindings: Vec<std::sync::Arc<Value>>,
}

fn strings(value: &Value) -> impl Iterator<Item = &str> {
    value.as_array().into_iter().flatten().filter_map(Value::as_str)
}

fn subject_matches(subject: &Value, user: &User, binding_namespace: Option<&str>) -> bool {
    let name = subject["name"].as_str().unwrap_or("");
    match subject["kind"].as_str() {
        Some("User") => name == user.name,
        Some("Group") => user.is_in(name),
        Some("ServiceAccount") => {
            let namespace = subject["namespace"].as_str().or(binding_namespace).unwrap_or("");
            user.name == format!("system:serviceaccount:{namespace}:{name}")
        }
        _ => false,
    }
}

fn rule_allows(rule: &Value, attributes: &Attributes<'_>) -> bool {
    let has = |field: &str, wanted: &str| strings(&rule[field]).any(|v| v == "*" || v == wanted);
    match attributes {
        Attributes::Resource { verb, group, resource, name, .. } => {
            let names: Vec<&str> = strings(&rule["resourceNames"]).collect();
            let resource_ok = strings(&rule["resources"]).any(|r| {
                r == "*"
                    || r == resource
                    || r.strip_suffix("/*")
                        .is_some_and(|base| resource.starts_with(&format!("{base}/")))
            });
            has("verbs", verb)
                && has("apiGroups", group)
                && resource_ok
                && (names.is_empty() || name.is_some_and(|n| names.contains(&n)))
        }
        Attributes::NonResource { verb, path } => {
            has("verbs", verb)
                && strings(&rule["nonResourceURLs"]).any(|u| {
                    u == "*"
                        || u == *path
                        || u.strip_suffix('*').is_some_and(|p| path.starts_with(p))
                })
        }
    }
}

impl RbacView {
    /// Kubernetes' privilege-escalation prevention for RBAC writes: a user may create or
    /// change a role only with rules it already holds (or the `escalate` verb on roles), and
    /// bind a role only if it holds the role's rules (or the `bind` verb on it). `object` is a
    /// Role, ClusterRole, RoleBinding or ClusterRoleBinding; `namespace` is where it lives.
    pub fn may_grant(
        &self,
        user: &User,
        object: &Value,
        namespace: Option<&str>,
    ) -> Result<(), String> {
        if user.is_in("system:masters") {
            return Ok(());
        }
        let kind = object["kind"].as_str().unwrap_or("");
        let (rules, verb, resource, name) = match kind {
            "Role" | "ClusterRole" => {
                let rules = object["rules"].as_array().cloned().unwrap_or_default();
                let plural = if kind == "Role" { "roles" } else { "clusterroles" };
                (rules, "escalate", plural, object["metadata"]["name"].as_str())
            }
            _ => {
                let role_ref = &object["roleRef"];
                let plural = if role_ref["kind"] == "Role" { "roles" } else { "clusterroles" };
                let rules = self.role_rules(role_ref, namespace);
                (rules, "bind", plural, role_ref["name"].as_str())
            }
        };
        let special = Attributes::Resource {
            verb,
            group: "rbac.authorization.k8s.io",
            resource: resource.to_string(),
            namespace,
            name,
        };
        if self.allows(user, &special) {
            return Ok(());
        }
        for rule in &rules {
            if let Some(missing) = self.missing_from(user, rule, namespace) {
                return Err(format!(
                    "user \"{}\" is attempting to grant RBAC permissions not currently held: \
                     {missing}",
                    user.name
                ));
            }
        }
        Ok(())
    }

    /// The first part of `rule` the user does not hold, if any.
    fn missing_from(&self, user: &User, rule: &Value, namespace: Option<&str>) -> Option<String> {
        let list = |field: &str| strings(&rule[field]).map(str::to_string).collect::<Vec<_>>();
        let verbs = list("verbs");
        let urls = list("nonResourceURLs");
        for url in &urls {
            for verb in &verbs {
                if !self.allows(user, &Attributes::NonResource { verb, path: url }) {
                    return Some(format!("{{NonResourceURLs:[\"{url}\"], Verbs:[\"{verb}\"]}}"));
                }
            }
        }
        let names = list("resourceNames");
        let names: Vec<Option<&str>> = if names.is_empty() {
            vec![None]
        } else {
            names.iter().map(|n| Some(n.as_str())).collect()
        };
        for group in list("apiGroups") {
            for resource in list("resources") {
                for verb in &verbs {
                    for name in &names {
                        let wanted = Attributes::Resource {
                            verb,
                            group: &group,
                            resource: resource.clone(),
                            namespace,
                            name: *name,
                        };
                        if !self.allows(user, &wanted) {
                            return Some(format!(
                                "{{APIGroups:[\"{group}\"], Resources:[\"{resource}\"], \
                                 Verbs:[\"{verb}\"]}}"
                            ));
                        }
                    }
                }
            }
        }
        None
    }

    fn role_rules(&self, role_ref: &Value, namespace: Option<&str>) -> Vec<Value> {
        let name = role_ref["name"].as_str().unwrap_or("");
        let found = match role_ref["kind"].as_str() {
            Some("ClusterRole") => {
                self.cluster_roles.iter().find(|r| r["metadata"]["name"] == name)
            }
            Some("Role") => self.roles.iter().find(|r| {
                r["metadata"]["name"] == name && r["metadata"]["namespace"].as_str() == namespace
            }),
            _ => None,
        };
        found.map(|r| r["rules"].as_array().cloned().unwrap_or_default()).unwrap_or_default()
    }

    /// Decides as Kubernetes' RBAC authorizer: allowed if any rule of any role bound to the
    /// user (cluster-wide, or in the request's namespace) covers the request. `system:masters`
    /// is allowed everything, as in Kubernetes.
    pub fn allows(&self, user: &User, attributes: &Attributes<'_>) -> bool {
        if user.is_in("system:masters") {
            return true;
        }
        for binding in &self.cluster_role_bindings {
            let subjects = binding["subjects"].as_array().into_iter().flatten();
            if subjects.clone().any(|s| subject_matches(s, user, None))
                && self
                    .role_rules(&binding["roleRef"], None)
                    .iter()
                    .any(|r| rule_allows(r, attributes))
            {
                return true;
            }
        }
        let Attributes::Resource { namespace: Some(namespace), .. } = attributes else {
            return false;
        };
        self.role_bindings.iter().any(|binding| {
            let binding_namespace = binding["metadata"]["namespace"].as_str();
            binding_namespace == Some(*namespace)
                && binding["subjects"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|s| subject_matches(s, user, binding_namespace))
                && self
                    .role_rules(&binding["roleRef"], binding_namespace)
                    .iter()
                    .any(|r| rule_allows(r, attributes))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn user(name: &str, groups: &[&str]) -> User {
        User { name: name.into(), groups: groups.iter().map(|g| g.to_string()).collect() }
    }

    fn get_pods<'a>(namespace: Option<&'a str>, verb: &'a str) -> Attributes<'a> {
        Attributes::Resource { verb, group: "", resource: "pods".into(), namespace, name: None }
    }

    #[test]
    fn token_file_lines_give_users_and_groups() {
        let file =
            TokenFile::parse("# comment\nsecret,alice,1,\"dev,ops\"\nother,bob,2\n").unwrap();
        assert_eq!(file.user("secret"), Some(&user("alice", &["dev", "ops"])));
        assert_eq!(file.user("other"), Some(&user("bob", &[])));
        assert!(file.user("nope").is_none());
        assert!(TokenFile::parse("onlytoken\n").unwrap_err().contains("line 1"));
    }

    #[test]
    fn rbac_allows_what_bound_rules_cover_and_nothing_else() {
        let view = RbacView {
            roles: vec![Arc::new(json!({"metadata": {"name": "reader", "namespace": "dev"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]}))],
            role_bindings: vec![Arc::new(json!({"metadata": {"name": "b", "namespace": "dev"},
                "subjects": [{"kind": "User", "name": "alice"}],
                "roleRef": {"kind": "Role", "name": "reader"}}))],
            cluster_roles: vec![Arc::new(json!({"metadata": {"name": "health"},
                "rules": [{"nonResourceURLs": ["/healthz", "/version*"], "verbs": ["get"]}]}))],
            cluster_role_bindings: vec![Arc::new(json!({"metadata": {"name": "h"},
                "subjects": [{"kind": "Group", "name": "system:authenticated"}],
                "roleRef": {"kind": "ClusterRole", "name": "health"}}))],
        };
        let alice = user("alice", &["system:authenticated"]);
        assert!(view.allows(&alice, &get_pods(Some("dev"), "list")));
        assert!(!view.allows(&alice, &get_pods(Some("dev"), "delete")));
        assert!(!view.allows(&alice, &get_pods(Some("prod"), "list")));
        assert!(!view.allows(&alice, &get_pods(None, "list")), "namespaced grant is not global");
        let version = Attributes::NonResource { verb: "get", path: "/version/" };
        assert!(view.allows(&alice, &version));
        let admin = user("root", &["system:masters"]);
        assert!(view.allows(&admin, &get_pods(None, "delete")));

        // alice reads pods in dev: she may bind `reader` there, not cluster-admin.
        let mut view = view;
        view.cluster_roles.push(Arc::new(json!({"metadata": {"name": "cluster-admin"},
            "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]})));
        let bind = |role: &str, kind: &str| {
            json!({"kind": "RoleBinding",
            "metadata": {"name": "x", "namespace": "dev"},
            "roleRef": {"kind": kind, "name": role},
            "subjects": [{"kind": "User", "name": "alice"}]})
        };
        assert!(view.may_grant(&alice, &bind("reader", "Role"), Some("dev")).is_ok());
        let escalation = view.may_grant(&alice, &bind("cluster-admin", "ClusterRole"), Some("dev"));
        assert!(escalation.unwrap_err().contains("not currently held"));
        let role = |verb: &str| {
            json!({"kind": "Role", "metadata": {"name": "r"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": [verb]}]})
        };
        assert!(view.may_grant(&alice, &role("list"), Some("dev")).is_ok());
        assert!(view.may_grant(&alice, &role("delete"), Some("dev")).is_err());
        assert!(view.may_grant(&admin, &bind("cluster-admin", "ClusterRole"), None).is_ok());
    }
}
