//! Label selectors: the `labelSelector` query syntax (`a=b`, `a==b`, `a!=b`, `a in (x,y)`,
//! `a notin (x)`, `a`, `!a`, `a>1`, `a<1`, comma for AND), `metav1.LabelSelector`
//! documents, and matching against `metadata.labels`.
//!
//! The parser is apimachinery's grammar: a lexer splits identifiers from the symbols
//! `= == != ! ( ) , > <`, `in` and `notin` are keywords only where an operator may stand, and
//! errors name the token found and the tokens expected.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::{Map, Value};

use super::validation::{label_value_errors, qualified_name_errors};
use super::SelectorError;

/// How a requirement relates a label to its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelOperator {
    /// `key=value`
    Equals,
    /// `key==value` (same meaning as `=`)
    DoubleEquals,
    /// `key!=value`: matches when the label is absent too.
    NotEquals,
    /// `key in (a,b)`
    In,
    /// `key notin (a,b)`: matches when the label is absent too.
    NotIn,
    /// `key`
    Exists,
    /// `!key`
    DoesNotExist,
    /// `key>5`: the label is an integer greater than the value.
    GreaterThan,
    /// `key<5`: the label is an integer less than the value.
    LessThan,
}

/// One requirement of a label selector; a selector matches when all of them do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelRequirement {
    key: String,
    operator: LabelOperator,
    /// Sorted and without duplicates, as Kubernetes keeps them.
    values: Vec<String>,
}

impl LabelRequirement {
    /// Builds a requirement, checking it as Kubernetes' `NewRequirement` does: a valid key,
    /// valid values, one value for `=`/`==`/`!=`/`>`/`<` (an integer for the last two), at
    /// least one for `in`/`notin`, none for exists / does-not-exist. The error is the message
    /// its caller wraps in a [`SelectorError`].
    fn new(
        key: &str,
        operator: LabelOperator,
        values: impl IntoIterator<Item = String>,
    ) -> Result<LabelRequirement, String> {
        if let Some(error) = key_error(key) {
            return Err(error);
        }
        let values: Vec<String> = values.into_iter().collect::<BTreeSet<_>>().into_iter().collect();
        let rendered = || format!("{values:?}");
        match operator {
            LabelOperator::In | LabelOperator::NotIn if values.is_empty() => {
                return Err(format!(
                    "values: Invalid value: {}: for 'in', 'notin' operators, values set can't \
                     be empty",
                    rendered()
                ));
            }
            LabelOperator::Equals | LabelOperator::DoubleEquals | LabelOperator::NotEquals
                if values.len() != 1 =>
            {
                return Err(format!(
                    "values: Invalid value: {}: exact-match compatibility requires one single \
                     value",
                    rendered()
                ));
            }
            LabelOperator::Exists | LabelOperator::DoesNotExist if !values.is_empty() => {
                return Err(format!(
                    "values: Invalid value: {}: values set must be empty for exists and does \
                     not exist",
                    rendered()
                ));
            }
            LabelOperator::GreaterThan | LabelOperator::LessThan => {
                if values.len() != 1 {
                    return Err(format!(
                        "values: Invalid value: {}: for 'Gt', 'Lt' operators, exactly one value \
                         is required",
                        rendered()
                    ));
                }
                if values[0].parse::<i64>().is_err() {
                    return Err(format!(
                        "values[0]: Invalid value: {:?}: for 'Gt', 'Lt' operators, the value \
                         must be an integer",
                        values[0]
                    ));
                }
            }
            _ => {}
        }
        for (index, value) in values.iter().enumerate() {
            let errors = label_value_errors(value);
            if !errors.is_empty() {
                return Err(format!(
                    "values[{index}][{key}]: Invalid value: {value:?}: {}",
                    errors.join("; ")
                ));
            }
        }
        Ok(LabelRequirement { key: key.to_owned(), operator, values })
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn operator(&self) -> LabelOperator {
        self.operator
    }

    /// The values, sorted and without duplicates.
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether `labels` (a `metadata.labels` map; non-string values count as absent)
    /// satisfies this requirement.
    pub fn matches_labels(&self, labels: Option<&Map<String, Value>>) -> bool {
        let label = labels.and_then(|labels| labels.get(&self.key)).and_then(Value::as_str);
        let has_value = |label: &str| self.values.iter().any(|value| value == label);
        match self.operator {
            LabelOperator::In | LabelOperator::Equals | LabelOperator::DoubleEquals => {
                label.is_some_and(has_value)
            }
            LabelOperator::NotIn | LabelOperator::NotEquals => !label.is_some_and(has_value),
            LabelOperator::Exists => label.is_some(),
            LabelOperator::DoesNotExist => label.is_none(),
            LabelOperator::GreaterThan | LabelOperator::LessThan => {
                let Some(Ok(actual)) = label.map(str::parse::<i64>) else {
                    return false;
                };
                let Some(Ok(bound)) = self.values.first().map(|value| value.parse::<i64>()) else {
                    return false;
                };
                match self.operator {
                    LabelOperator::GreaterThan => actual > bound,
                    _ => actual < bound,
                }
            }
        }
    }
}

impl fmt::Display for LabelRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let values = self.values.join(",");
        match self.operator {
            LabelOperator::Exists => write!(f, "{}", self.key),
            LabelOperator::DoesNotExist => write!(f, "!{}", self.key),
            LabelOperator::Equals => write!(f, "{}={values}", self.key),
            LabelOperator::DoubleEquals => write!(f, "{}=={values}", self.key),
            LabelOperator::NotEquals => write!(f, "{}!={values}", self.key),
            LabelOperator::GreaterThan => write!(f, "{}>{values}", self.key),
            LabelOperator::LessThan => write!(f, "{}<{values}", self.key),
            LabelOperator::In => write!(f, "{} in ({values})", self.key),
            LabelOperator::NotIn => write!(f, "{} notin ({values})", self.key),
        }
    }
}

fn key_error(key: &str) -> Option<String> {
    let errors = qualified_name_errors(key);
    (!errors.is_empty()).then(|| format!("key: Invalid value: {key:?}: {}", errors.join("; ")))
}

/// A label selector: the AND of its requirements, or "nothing" for a null
/// `metav1.LabelSelector`, which matches no object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<LabelRequirement>,
    matches_nothing: bool,
}

impl LabelSelector {
    /// The selector that matches every object (an empty selector).
    pub fn everything() -> LabelSelector {
        LabelSelector { requirements: Vec::new(), matches_nothing: false }
    }

    /// The selector that matches no object (a null `metav1.LabelSelector`).
    pub fn nothing() -> LabelSelector {
        LabelSelector { requirements: Vec::new(), matches_nothing: true }
    }

    /// Parses the query syntax of `?labelSelector=`; an empty or all-blank string selects
    /// everything.
    pub fn parse(selector: &str) -> Result<LabelSelector, SelectorError> {
        let tokens = lex(selector);
        let mut parser = Parser { tokens, position: 0 };
        let mut requirements = parser.parse().map_err(SelectorError::LabelSyntax)?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements, matches_nothing: false })
    }

    /// Converts a `metav1.LabelSelector` (`matchLabels` and `matchExpressions` with `In`,
    /// `NotIn`, `Exists`, `DoesNotExist`) as `LabelSelectorAsSelector` does: `null` selects
    /// nothing, `{}` selects everything.
    pub fn from_json(selector: &Value) -> Result<LabelSelector, SelectorError> {
        let invalid = SelectorError::InvalidLabelSelector;
        let selector = match selector {
            Value::Null => return Ok(LabelSelector::nothing()),
            Value::Object(selector) => selector,
            other => {
                return Err(invalid(format!("a label selector must be an object, not {other}")))
            }
        };
        let mut requirements = Vec::new();
        match selector.get("matchLabels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(labels)) => {
                for (key, value) in labels {
                    let Value::String(value) = value else {
                        return Err(invalid(format!("matchLabels[{key:?}] must be a string")));
                    };
                    let requirement =
                        LabelRequirement::new(key, LabelOperator::Equals, [value.clone()]);
                    requirements.push(requirement.map_err(invalid)?);
                }
            }
            Some(other) => {
                return Err(invalid(format!("matchLabels must be an object, not {other}")))
            }
        }
        match selector.get("matchExpressions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(expressions)) => {
                for expression in expressions {
                    requirements.push(expression_requirement(expression)?);
                }
            }
            Some(other) => {
                return Err(invalid(format!("matchExpressions must be a list, not {other}")))
            }
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements, matches_nothing: false })
    }

    /// Whether `object`'s `metadata.labels` satisfies every requirement.
    pub fn matches(&self, object: &Value) -> bool {
        let labels =
            object.get("metadata").and_then(|m| m.get("labels")).and_then(Value::as_object);
        self.matches_labels(labels)
    }

    /// Whether a `metadata.labels` map (or its absence) satisfies every requirement.
    pub fn matches_labels(&self, labels: Option<&Map<String, Value>>) -> bool {
        !self.matches_nothing && self.requirements.iter().all(|r| r.matches_labels(labels))
    }

    /// True when the selector does not restrict anything (it matches every object).
    pub fn is_empty(&self) -> bool {
        !self.matches_nothing && self.requirements.is_empty()
    }

    /// True for the selector of a null `metav1.LabelSelector`.
    pub fn matches_nothing(&self) -> bool {
        self.matches_nothing
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[LabelRequirement] {
        &self.requirements
    }

    /// The single value `key` must have, if the selector pins it (`key=v`, `key==v` or
    /// `key in (v)`), so a caller can narrow a read.
    pub fn requires_exact_match(&self, key: &str) -> Option<&str> {
        let requirement = self.requirements.iter().find(|r| r.key == key)?;
        match (requirement.operator, requirement.values.as_slice()) {
            (LabelOperator::Equals | LabelOperator::DoubleEquals | LabelOperator::In, [value]) => {
                Some(value)
            }
            _ => None,
        }
    }
}

impl fmt::Display for LabelSelector {
    /// The canonical query form (requirements sorted by key, values sorted).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, requirement) in self.requirements.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

fn expression_requirement(expression: &Value) -> Result<LabelRequirement, SelectorError> {
    let invalid = SelectorError::InvalidLabelSelector;
    let key = expression.get("key").and_then(Value::as_str).unwrap_or_default();
    let operator = expression.get("operator").and_then(Value::as_str).unwrap_or_default();
    let operator = match operator {
        "In" => LabelOperator::In,
        "NotIn" => LabelOperator::NotIn,
        "Exists" => LabelOperator::Exists,
        "DoesNotExist" => LabelOperator::DoesNotExist,
        other => return Err(invalid(format!("{other:?} is not a valid label selector operator"))),
    };
    let values = match expression.get("values") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(values)) => values
            .iter()
            .map(|value| value.as_str().map(str::to_owned))
            .collect::<Option<Vec<String>>>()
            .ok_or_else(|| invalid(format!("values of {key:?} must be strings")))?,
        Some(other) => {
            return Err(invalid(format!("values of {key:?} must be a list, not {other}")))
        }
    };
    LabelRequirement::new(key, operator, values).map_err(invalid)
}

/// A token of the selector syntax.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    EndOfString,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier(String),
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

impl Token {
    /// The text the token came from, as error messages quote it.
    fn literal(&self) -> &str {
        match self {
            Token::EndOfString => "",
            Token::ClosedPar => ")",
            Token::Comma => ",",
            Token::DoesNotExist => "!",
            Token::DoubleEquals => "==",
            Token::Equals => "=",
            Token::GreaterThan => ">",
            Token::Identifier(text) => text,
            Token::In => "in",
            Token::LessThan => "<",
            Token::NotEquals => "!=",
            Token::NotIn => "notin",
            Token::OpenPar => "(",
        }
    }

    /// Where a value may stand, `in` and `notin` are plain identifiers (`a in (in)`).
    fn as_value(&self) -> Token {
        match self {
            Token::In | Token::NotIn => Token::Identifier(self.literal().to_owned()),
            other => other.clone(),
        }
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

fn is_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Splits a selector into tokens, ending with `EndOfString`.
fn lex(selector: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = selector.chars().peekable();
    loop {
        while chars.next_if(|c| is_whitespace(*c)).is_some() {}
        let Some(c) = chars.next() else {
            tokens.push(Token::EndOfString);
            return tokens;
        };
        let token = match c {
            '=' if chars.next_if_eq(&'=').is_some() => Token::DoubleEquals,
            '!' if chars.next_if_eq(&'=').is_some() => Token::NotEquals,
            '=' => Token::Equals,
            '!' => Token::DoesNotExist,
            '(' => Token::OpenPar,
            ')' => Token::ClosedPar,
            ',' => Token::Comma,
            '>' => Token::GreaterThan,
            '<' => Token::LessThan,
            first => {
                let mut word = String::from(first);
                while let Some(c) = chars.next_if(|c| !is_special(*c) && !is_whitespace(*c)) {
                    word.push(c);
                }
                match word.as_str() {
                    "in" => Token::In,
                    "notin" => Token::NotIn,
                    _ => Token::Identifier(word),
                }
            }
        };
        tokens.push(token);
    }
}

/// A recursive-descent parser over the tokens (apimachinery's `Parser`).
struct Parser {
    tokens: Vec<Token>,
    position: usize,
}

impl Parser {
    /// The next token with `in`/`notin` read as identifiers; `EndOfString` past the end.
    fn lookahead_value(&self) -> Token {
        self.tokens.get(self.position).map_or(Token::EndOfString, Token::as_value)
    }

    fn consume_value(&mut self) -> Token {
        let token = self.lookahead_value();
        self.position += 1;
        token
    }

    /// The next token as an operator position reads it (`in`/`notin` are keywords).
    fn consume_operator(&mut self) -> Token {
        let token = self.tokens.get(self.position).cloned().unwrap_or(Token::EndOfString);
        self.position += 1;
        token
    }

    fn parse(&mut self) -> Result<Vec<LabelRequirement>, String> {
        let mut requirements = Vec::new();
        loop {
            match self.lookahead_value() {
                Token::Identifier(_) | Token::DoesNotExist => {
                    let requirement = self
                        .parse_requirement()
                        .map_err(|error| format!("unable to parse requirement: {error}"))?;
                    requirements.push(requirement);
                    match self.consume_value() {
                        Token::EndOfString => return Ok(requirements),
                        Token::Comma => {
                            let next = self.lookahead_value();
                            if !matches!(next, Token::Identifier(_) | Token::DoesNotExist) {
                                return Err(format!(
                                    "found '{}', expected: identifier after ','",
                                    next.literal()
                                ));
                            }
                        }
                        other => {
                            return Err(format!(
                                "found '{}', expected: ',' or 'end of string'",
                                other.literal()
                            ))
                        }
                    }
                }
                Token::EndOfString => return Ok(requirements),
                other => {
                    return Err(format!(
                        "found '{}', expected: !, identifier, or 'end of string'",
                        other.literal()
                    ))
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<LabelRequirement, String> {
        let (key, inferred) = self.parse_key_and_infer_operator()?;
        if let Some(operator) = inferred {
            return LabelRequirement::new(&key, operator, []);
        }
        let operator = self.parse_operator()?;
        let values = match operator {
            LabelOperator::In | LabelOperator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        LabelRequirement::new(&key, operator, values)
    }

    /// The key, and `Exists` / `DoesNotExist` when no binary operator follows.
    fn parse_key_and_infer_operator(&mut self) -> Result<(String, Option<LabelOperator>), String> {
        let mut token = self.consume_value();
        let mut operator = None;
        if token == Token::DoesNotExist {
            operator = Some(LabelOperator::DoesNotExist);
            token = self.consume_value();
        }
        let Token::Identifier(key) = token else {
            return Err(format!("found '{}', expected: identifier", token.literal()));
        };
        if let Some(error) = key_error(&key) {
            return Err(error);
        }
        let next = self.lookahead_value();
        if operator.is_none() && matches!(next, Token::EndOfString | Token::Comma) {
            operator = Some(LabelOperator::Exists);
        }
        Ok((key, operator))
    }

    fn parse_operator(&mut self) -> Result<LabelOperator, String> {
        let token = self.consume_operator();
        match token {
            Token::In => Ok(LabelOperator::In),
            Token::Equals => Ok(LabelOperator::Equals),
            Token::DoubleEquals => Ok(LabelOperator::DoubleEquals),
            Token::GreaterThan => Ok(LabelOperator::GreaterThan),
            Token::LessThan => Ok(LabelOperator::LessThan),
            Token::NotIn => Ok(LabelOperator::NotIn),
            Token::NotEquals => Ok(LabelOperator::NotEquals),
            other => {
                Err(format!("found '{}', expected: in, notin, =, ==, !=, gt, lt", other.literal()))
            }
        }
    }

    /// `( values )`: identifiers separated by commas, where missing ones are empty strings.
    fn parse_values(&mut self) -> Result<Vec<String>, String> {
        let token = self.consume_value();
        if token != Token::OpenPar {
            return Err(format!("found '{}' expected: '('", token.literal()));
        }
        match self.lookahead_value() {
            Token::Identifier(_) | Token::Comma => {
                let values = self.parse_identifiers_list()?;
                let token = self.consume_value();
                if token != Token::ClosedPar {
                    return Err(format!("found '{}', expected: ')'", token.literal()));
                }
                Ok(values)
            }
            Token::ClosedPar => {
                self.consume_value();
                Ok(vec![String::new()])
            }
            other => Err(format!("found '{}', expected: ',', ')' or identifier", other.literal())),
        }
    }

    fn parse_identifiers_list(&mut self) -> Result<Vec<String>, String> {
        let mut values = Vec::new();
        loop {
            match self.consume_value() {
                Token::Identifier(value) => {
                    values.push(value);
                    match self.lookahead_value() {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(values),
                        other => {
                            return Err(format!(
                                "found '{}', expected: ',' or ')'",
                                other.literal()
                            ))
                        }
                    }
                }
                // `(,a)`, `(a,)` and `(a,,b)` hold empty values.
                Token::Comma => {
                    if values.is_empty() {
                        values.push(String::new());
                    }
                    match self.lookahead_value() {
                        Token::ClosedPar => {
                            values.push(String::new());
                            return Ok(values);
                        }
                        Token::Comma => {
                            self.consume_value();
                            values.push(String::new());
                        }
                        _ => {}
                    }
                }
                other => {
                    return Err(format!(
                        "found '{}', expected: ',', or identifier",
                        other.literal()
                    ))
                }
            }
        }
    }

    /// The single value after `=`, `==`, `!=`, `>` or `<`; empty when none follows.
    fn parse_exact_value(&mut self) -> Result<Vec<String>, String> {
        if matches!(self.lookahead_value(), Token::EndOfString | Token::Comma) {
            return Ok(vec![String::new()]);
        }
        match self.consume_value() {
            Token::Identifier(value) => Ok(vec![value]),
            other => Err(format!("found '{}', expected: identifier", other.literal())),
        }
    }
}

#[cfg(test)]
mod tests;
