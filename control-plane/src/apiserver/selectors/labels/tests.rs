//! Label selector parsing, its error messages, `metav1.LabelSelector` conversion and
//! matching.

use serde_json::{json, Value};

use super::{LabelOperator, LabelSelector};
use crate::apiserver::selectors::SelectorError;

fn object(labels: Value) -> Value {
    json!({"metadata": {"name": "x", "labels": labels}})
}

fn parse(selector: &str) -> LabelSelector {
    match LabelSelector::parse(selector) {
        Ok(parsed) => parsed,
        Err(error) => panic!("{selector:?} failed: {error}"),
    }
}

/// Parses `selector`, checks its canonical form, and checks which label sets it matches.
fn check(selector: &str, canonical: &str, matching: &[Value], not_matching: &[Value]) {
    let parsed = parse(selector);
    assert_eq!(parsed.to_string(), canonical, "{selector:?}");
    for labels in matching {
        assert!(parsed.matches(&object(labels.clone())), "{selector:?} must match {labels}");
    }
    for labels in not_matching {
        assert!(!parsed.matches(&object(labels.clone())), "{selector:?} must not match {labels}");
    }
}

fn check_error(selector: &str, expected: &str) {
    match LabelSelector::parse(selector) {
        Ok(parsed) => panic!("{selector:?} parsed as {parsed}"),
        Err(error) => {
            assert!(matches!(error, SelectorError::LabelSyntax(_)), "{error:?}");
            assert_eq!(error.to_string(), expected, "{selector:?}");
        }
    }
}

#[test]
fn equality_requirements() {
    check(
        "app=web",
        "app=web",
        &[json!({"app": "web", "x": "y"})],
        &[json!({"app": "db"}), json!({})],
    );
    check("app==web", "app==web", &[json!({"app": "web"})], &[json!({"app": "db"})]);
    check("app!=web", "app!=web", &[json!({"app": "db"}), json!({})], &[json!({"app": "web"})]);
    check("app=", "app=", &[json!({"app": ""})], &[json!({}), json!({"app": "x"})]);
    check(
        " app = web , tier=front ",
        "app=web,tier=front",
        &[json!({"app": "web", "tier": "front"})],
        &[json!({"app": "web"}), json!({"tier": "front"})],
    );
}

#[test]
fn set_requirements() {
    check(
        "env in (prod, staging)",
        "env in (prod,staging)",
        &[json!({"env": "prod"}), json!({"env": "staging"})],
        &[json!({"env": "dev"}), json!({})],
    );
    check(
        "env notin (prod)",
        "env notin (prod)",
        &[json!({"env": "dev"}), json!({})],
        &[json!({"env": "prod"})],
    );
    check("env in (b,a,b)", "env in (a,b)", &[json!({"env": "a"})], &[]);
    // Empty values: `()` is the empty string, as are the gaps in `(,a,,)`.
    check("env in ()", "env in ()", &[json!({"env": ""})], &[json!({"env": "a"})]);
    check("env in (,a,,b)", "env in (,a,b)", &[json!({"env": ""}), json!({"env": "b"})], &[]);
    check("env in (a,)", "env in (,a)", &[json!({"env": ""}), json!({"env": "a"})], &[]);
    // `in` and `notin` are values where values stand.
    check("k in (in,notin)", "k in (in,notin)", &[json!({"k": "notin"})], &[json!({"k": "x"})]);
    check("in=notin", "in=notin", &[json!({"in": "notin"})], &[]);
}

#[test]
fn existence_requirements() {
    check("app", "app", &[json!({"app": ""}), json!({"app": "x"})], &[json!({})]);
    check("!app", "!app", &[json!({}), json!({"other": "app"})], &[json!({"app": "x"})]);
    check(
        "app,!canary,tier in (a)",
        "app,!canary,tier in (a)",
        &[json!({"app": "1", "tier": "a"})],
        &[json!({"app": "1", "tier": "a", "canary": "y"}), json!({"tier": "a"})],
    );
}

#[test]
fn numeric_requirements() {
    check(
        "replicas>2",
        "replicas>2",
        &[json!({"replicas": "3"})],
        &[json!({"replicas": "2"}), json!({"replicas": "x"}), json!({})],
    );
    check("n<3", "n<3", &[json!({"n": "-5"}), json!({"n": "2"})], &[json!({"n": "3"})]);
}

#[test]
fn empty_selectors_match_everything() {
    for selector in ["", "  ", "\t"] {
        let parsed = parse(selector);
        assert!(parsed.is_empty());
        assert!(!parsed.matches_nothing());
        assert!(parsed.matches(&json!({"metadata": {}})));
        assert!(parsed.matches(&json!({})));
    }
    assert!(!parse("a").is_empty());
}

#[test]
fn requirements_are_sorted_and_exposed() {
    let parsed = parse("z=1,a in (x),m");
    let keys: Vec<&str> = parsed.requirements().iter().map(|r| r.key()).collect();
    assert_eq!(keys, ["a", "m", "z"]);
    assert_eq!(parsed.requirements()[0].operator(), LabelOperator::In);
    assert_eq!(parsed.requirements()[0].values(), ["x"]);
    assert_eq!(parsed.requires_exact_match("a"), Some("x"));
    assert_eq!(parsed.requires_exact_match("z"), Some("1"));
    assert_eq!(parsed.requires_exact_match("m"), None);
    assert_eq!(parse("a!=1").requires_exact_match("a"), None);
    assert_eq!(parse("a in (1,2)").requires_exact_match("a"), None);
}

#[test]
fn syntax_errors_name_the_problem() {
    check_error("a=b=c", "found '=', expected: ',' or 'end of string'");
    check_error(
        "a b",
        "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt",
    );
    check_error("a,", "found '', expected: identifier after ','");
    check_error("a,,b", "found ',', expected: identifier after ','");
    check_error(",a", "found ',', expected: !, identifier, or 'end of string'");
    check_error("=a", "found '=', expected: !, identifier, or 'end of string'");
    check_error("a in", "unable to parse requirement: found '' expected: '('");
    check_error(
        "a in (",
        "unable to parse requirement: found '', expected: ',', ')' or identifier",
    );
    check_error("a in (x y)", "unable to parse requirement: found 'y', expected: ',' or ')'");
    check_error(
        "a in (x,,)",
        "unable to parse requirement: found ')', expected: ',', or identifier",
    );
    check_error("a in (x", "unable to parse requirement: found '', expected: ',' or ')'");
    check_error("a notin x", "unable to parse requirement: found 'x' expected: '('");
    check_error(
        "a (x)",
        "unable to parse requirement: found '(', expected: in, notin, =, ==, !=, gt, lt",
    );
    check_error("a=(x)", "unable to parse requirement: found '(', expected: identifier");
    check_error("!", "unable to parse requirement: found '', expected: identifier");
    check_error("!a=b", "found '=', expected: ',' or 'end of string'");
    check_error(
        "a>x",
        "unable to parse requirement: values[0]: Invalid value: \"x\": for 'Gt', 'Lt' \
         operators, the value must be an integer",
    );
}

#[test]
fn invalid_keys_and_values_are_refused() {
    let error = LabelSelector::parse("-a=b").expect_err("bad key");
    assert!(
        error.to_string().starts_with(
            "unable to parse requirement: key: Invalid value: \"-a\": name part must consist of \
             alphanumeric characters"
        ),
        "{error}"
    );
    let error = LabelSelector::parse("a=b$").expect_err("bad value");
    assert!(
        error.to_string().starts_with(
            "unable to parse requirement: values[0][a]: Invalid value: \"b$\": a valid label \
             must be an empty string"
        ),
        "{error}"
    );
    let long = format!("a={}", "v".repeat(64));
    let error = LabelSelector::parse(&long).expect_err("long value");
    assert!(error.to_string().ends_with("must be no more than 63 characters"), "{error}");
    assert!(LabelSelector::parse("example.com/app=web").is_ok());
}

#[test]
fn label_selector_documents() {
    let selector = LabelSelector::from_json(&json!({
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["front", "edge"]},
            {"key": "env", "operator": "NotIn", "values": ["dev"]},
            {"key": "owner", "operator": "Exists"},
            {"key": "canary", "operator": "DoesNotExist", "values": []}
        ]
    }))
    .expect("valid selector");
    assert_eq!(selector.to_string(), "app=web,!canary,env notin (dev),owner,tier in (edge,front)");
    assert!(selector.matches(&object(json!({"app": "web", "tier": "edge", "owner": "me"}))));
    assert!(!selector.matches(&object(json!({"app": "web", "tier": "edge"}))));
    assert!(!selector
        .matches(&object(json!({"app": "web", "tier": "edge", "owner": "me", "canary": "1"}))));
    assert!(!selector.matches(&object(json!({"app": "web", "tier": "x", "owner": "me"}))));
    assert!(!selector
        .matches(&object(json!({"app": "web", "tier": "edge", "owner": "me", "env": "dev"}))));
}

#[test]
fn null_selects_nothing_and_empty_selects_everything() {
    let nothing = LabelSelector::from_json(&Value::Null).expect("null is valid");
    assert!(nothing.matches_nothing());
    assert!(!nothing.is_empty());
    assert!(!nothing.matches(&object(json!({}))));
    assert_eq!(nothing, LabelSelector::nothing());
    for empty in [
        json!({}),
        json!({"matchLabels": {}, "matchExpressions": []}),
        json!({"matchLabels": null}),
    ] {
        let everything = LabelSelector::from_json(&empty).expect("empty is valid");
        assert!(everything.is_empty(), "{empty}");
        assert!(everything.matches(&object(json!({"a": "b"}))));
        assert_eq!(everything, LabelSelector::everything());
    }
}

#[test]
fn invalid_label_selector_documents() {
    let cases = [
        (
            json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}),
            "\"Gt\" is not a valid label selector operator",
        ),
        (
            json!({"matchExpressions": [{"key": "a", "operator": "In"}]}),
            "values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty",
        ),
        (
            json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
            "values: Invalid value: [\"x\"]: values set must be empty for exists and does not \
             exist",
        ),
        (json!({"matchLabels": {"a": 1}}), "matchLabels[\"a\"] must be a string"),
        (json!({"matchLabels": ["a"]}), "matchLabels must be an object, not [\"a\"]"),
        (json!({"matchExpressions": {}}), "matchExpressions must be a list, not {}"),
        (json!("app=web"), "a label selector must be an object, not \"app=web\""),
    ];
    for (document, expected) in cases {
        let error = LabelSelector::from_json(&document).expect_err("invalid selector");
        assert!(matches!(error, SelectorError::InvalidLabelSelector(_)), "{error:?}");
        assert_eq!(error.to_string(), expected, "{document}");
    }
    let error =
        LabelSelector::from_json(&json!({"matchLabels": {"-a": "b"}})).expect_err("bad key");
    assert!(error.to_string().starts_with("key: Invalid value: \"-a\""), "{error}");
}

#[test]
fn labels_of_odd_objects() {
    let selector = parse("app=web");
    assert!(!selector.matches(&json!({})));
    assert!(!selector.matches(&json!({"metadata": {"labels": {"app": 1}}})));
    assert!(!selector.matches(&json!({"metadata": {"labels": null}})));
    assert!(parse("!app").matches(&json!({"metadata": {"labels": {"app": 1}}})));
}
