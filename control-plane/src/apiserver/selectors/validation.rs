//! Label key and value syntax (apimachinery's `IsQualifiedName` and `IsValidLabelValue`),
//! with Kubernetes' wording so a refused selector reads the same as from kube-apiserver.

const NAME_MAX_LEN: usize = 63;
const LABEL_VALUE_MAX_LEN: usize = 63;
const DNS1123_SUBDOMAIN_MAX_LEN: usize = 253;

const QUALIFIED_NAME_MESSAGE: &str = "must consist of alphanumeric characters, '-', '_' or '.', \
     and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or \
     '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MESSAGE: &str = "a valid label must be an empty string or consist of \
     alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric \
     character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is \
     '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const DNS1123_SUBDOMAIN_MESSAGE: &str = "a lowercase RFC 1123 subdomain must consist of lower \
     case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric \
     character (e.g. 'example.com', regex used for validation is \
     '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

fn max_len_error(max: usize) -> String {
    format!("must be no more than {max} characters")
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn is_qualified_name_part(name: &str) -> bool {
    let bytes = name.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*`
fn is_dns1123_subdomain(name: &str) -> bool {
    name.split('.').all(|label| {
        let bytes = label.as_bytes();
        let lower_alphanumeric = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        match (bytes.first(), bytes.last()) {
            (Some(first), Some(last)) => {
                lower_alphanumeric(first)
                    && lower_alphanumeric(last)
                    && bytes.iter().all(|b| lower_alphanumeric(b) || *b == b'-')
            }
            _ => false,
        }
    })
}

/// The problems with a label key (`[prefix/]name`); empty when it is valid.
pub fn qualified_name_errors(key: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let parts: Vec<&str> = key.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errors.push("prefix part must be non-empty".to_owned());
            } else {
                if prefix.len() > DNS1123_SUBDOMAIN_MAX_LEN {
                    errors
                        .push(format!("prefix part {}", max_len_error(DNS1123_SUBDOMAIN_MAX_LEN)));
                }
                if !is_dns1123_subdomain(prefix) {
                    errors.push(format!("prefix part {DNS1123_SUBDOMAIN_MESSAGE}"));
                }
            }
            *name
        }
        _ => {
            return vec![format!(
                "a qualified name {QUALIFIED_NAME_MESSAGE} with an optional DNS subdomain prefix \
                 and '/' (e.g. 'example.com/MyName')"
            )];
        }
    };
    if name.is_empty() {
        errors.push("name part must be non-empty".to_owned());
    } else if name.len() > NAME_MAX_LEN {
        errors.push(format!("name part {}", max_len_error(NAME_MAX_LEN)));
    }
    if !is_qualified_name_part(name) {
        errors.push(format!("name part {QUALIFIED_NAME_MESSAGE}"));
    }
    errors
}

/// The problems with a label value; empty when it is valid (the empty string is).
pub fn label_value_errors(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LEN {
        errors.push(max_len_error(LABEL_VALUE_MAX_LEN));
    }
    if !value.is_empty() && !is_qualified_name_part(value) {
        errors.push(LABEL_VALUE_MESSAGE.to_owned());
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_keys() {
        for valid in ["app", "a", "app.kubernetes.io/name", "k8s.io/a_b-c.d", "A9", "x/y"] {
            assert_eq!(qualified_name_errors(valid), Vec::<String>::new(), "{valid}");
        }
        assert_eq!(
            qualified_name_errors("-app"),
            vec![format!("name part {QUALIFIED_NAME_MESSAGE}")]
        );
        assert_eq!(
            qualified_name_errors(""),
            vec![
                "name part must be non-empty".to_owned(),
                format!("name part {QUALIFIED_NAME_MESSAGE}")
            ]
        );
        assert_eq!(qualified_name_errors("/a"), vec!["prefix part must be non-empty".to_owned()]);
        assert_eq!(
            qualified_name_errors("Example.com/a"),
            vec![format!("prefix part {DNS1123_SUBDOMAIN_MESSAGE}")]
        );
        assert_eq!(qualified_name_errors("a/b/c").len(), 1);
        assert!(qualified_name_errors("a/b/c")[0].starts_with("a qualified name must consist"));
        assert_eq!(
            qualified_name_errors(&"a".repeat(64)),
            vec!["name part must be no more than 63 characters".to_owned()]
        );
        assert!(qualified_name_errors(&format!("{}/a", "a".repeat(254)))
            .contains(&"prefix part must be no more than 253 characters".to_owned()));
    }

    #[test]
    fn label_values() {
        for valid in ["", "v", "1.2.3", "my_value", "A-b"] {
            assert_eq!(label_value_errors(valid), Vec::<String>::new(), "{valid:?}");
        }
        assert_eq!(label_value_errors("a b"), vec![LABEL_VALUE_MESSAGE.to_owned()]);
        assert_eq!(label_value_errors("x/y"), vec![LABEL_VALUE_MESSAGE.to_owned()]);
        assert_eq!(label_value_errors("-a"), vec![LABEL_VALUE_MESSAGE.to_owned()]);
        assert_eq!(label_value_errors(&"v".repeat(64)), vec![max_len_error(63)]);
    }
}
