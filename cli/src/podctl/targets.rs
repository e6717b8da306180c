//! The resource arguments commands take, as kubectl reads them: `TYPE[,TYPE...] [NAME...]` or
//! `TYPE/NAME...`, resolved through discovery into one request per type and name.

use super::client::Session;
use super::discovery::ResourceType;
use super::failure::Failure;

/// One resource type and, when given, one name of it.
#[derive(Clone, Debug)]
pub struct Target {
    pub resource: ResourceType,
    pub name: Option<String>,
}

/// The shape of the arguments, before resolution.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// `TYPE[,TYPE...] [NAME...]`.
    TypesAndNames { types: Vec<&'a str>, names: Vec<&'a str> },
    /// `TYPE/NAME...`.
    Slashed(Vec<(&'a str, &'a str)>),
}

/// Splits arguments into types and names (pure).
pub fn parse(arguments: &[String]) -> Result<Parsed<'_>, Failure> {
    if arguments.iter().any(|a| a.contains('/')) {
        let mut pairs = Vec::new();
        for argument in arguments {
            match argument.split_once('/') {
                Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {
                    pairs.push((kind, name))
                }
                _ => {
                    return Err(Failure::client(format!(
                        "there is no need to specify a resource type as a separate argument \
                         when passing arguments in resource/name form (e.g. 'podctl get \
                         resource/<resource_name>' instead of 'podctl get resource \
                         resource/<resource_name>'): {argument}"
                    )))
                }
            }
        }
        return Ok(Parsed::Slashed(pairs));
    }
    let Some((first, names)) = arguments.split_first() else {
        return Err(Failure::client("you must specify the type of resource to get"));
    };
    let types: Vec<&str> = first.split(',').filter(|t| !t.is_empty()).collect();
    Ok(Parsed::TypesAndNames { types, names: names.iter().map(String::as_str).collect() })
}

/// Resolves arguments into targets, in the order kubectl visits them.
pub async fn resolve(session: &mut Session, arguments: &[String]) -> Result<Vec<Target>, Failure> {
    let mut targets = Vec::new();
    match parse(arguments)? {
        Parsed::Slashed(pairs) => {
            for (kind, name) in pairs {
                let resource = session.resolve_one(kind).await?;
                targets.push(Target { resource, name: Some(name.to_string()) });
            }
        }
        Parsed::TypesAndNames { types, names } => {
            for typed in types {
                let resources: Vec<ResourceType> =
                    session.catalog().await?.resolve(typed)?.into_iter().cloned().collect();
                for resource in resources {
                    if names.is_empty() {
                        targets.push(Target { resource: resource.clone(), name: None });
                    }
                    for name in &names {
                        let name = Some(name.to_string());
                        targets.push(Target { resource: resource.clone(), name });
                    }
                }
            }
        }
    }
    Ok(targets)
}

/// Resolves arguments that must name exactly one object (`edit`, `patch`, `label`, ...);
/// the remaining arguments are returned after it.
pub async fn resolve_named<'a>(
    session: &mut Session,
    arguments: &'a [String],
) -> Result<(Vec<Target>, &'a [String]), Failure> {
    let Some(first) = arguments.first() else {
        return Err(Failure::client("you must specify the type of resource"));
    };
    if first.contains('/') {
        let count = arguments.iter().take_while(|a| a.contains('/') && !a.contains('=')).count();
        let targets = resolve(session, &arguments[..count]).await?;
        return Ok((targets, &arguments[count..]));
    }
    let Some(name) = arguments.get(1) else {
        return Err(Failure::client(format!(
            "resource(s) were provided, but no name was specified ({first})"
        )));
    };
    let resource = session.resolve_one(first).await?;
    Ok((vec![Target { resource, name: Some(name.clone()) }], &arguments[2..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn arguments_split_like_kubectl() {
        let arguments = strings(&["pods,deploy", "a", "b"]);
        assert_eq!(
            parse(&arguments).unwrap(),
            Parsed::TypesAndNames { types: vec!["pods", "deploy"], names: vec!["a", "b"] }
        );
        let arguments = strings(&["pod/a", "deployment.apps/web"]);
        assert_eq!(
            parse(&arguments).unwrap(),
            Parsed::Slashed(vec![("pod", "a"), ("deployment.apps", "web")])
        );
        assert!(parse(&strings(&["pods", "pod/a"])).is_err());
    }
}
