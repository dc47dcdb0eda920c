//! Structural schemas of custom resources: pruning of unknown fields and type checks.

use serde_json::{Map, Value};

use crate::status::Cause;

/// What checking an object against its schema found.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    /// Paths of fields the schema does not declare (they were removed).
    pub unknown: Vec<String>,
    /// Type and required-field violations.
    pub causes: Vec<Cause>,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(expected: &str, v: &Value) -> bool {
    match expected {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        _ => true,
    }
}

fn flag(schema: &Value, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// Prunes and checks `value` at `path` against `schema`.
fn walk(value: &mut Value, schema: &Value, path: &str, out: &mut Findings) {
    if value.is_null() && flag(schema, "nullable") {
        return;
    }
    if flag(schema, "x-kubernetes-int-or-string") {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            let actual = type_name(value);
            out.causes.push(Cause::new(
                "FieldValueTypeInvalid",
                format!("Invalid value: \"{actual}\": {path} in body must be of type integer or string: \"{actual}\""),
                path,
            ));
        }
        return;
    }
    if let Some(expected) = schema.get("type").and_then(Value::as_str)
        && !type_matches(expected, value)
    {
        let actual = type_name(value);
        out.causes.push(Cause::new(
            "FieldValueTypeInvalid",
            format!("Invalid value: \"{actual}\": {path} in body must be of type {expected}: \"{actual}\""),
            path,
        ));
        return;
    }
    check_value(value, schema, path, out);
    let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
    match value {
        Value::Object(obj) => {
            apply_defaults(obj, schema);
            if let Some(required) = schema.get("required").and_then(Value::as_array) {
                for r in required.iter().filter_map(Value::as_str) {
                    if !obj.contains_key(r) {
                        out.causes.push(Cause::new(
                            "FieldValueRequired",
                            "Required value",
                            join(path, r),
                        ));
                    }
                }
            }
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let keys: Vec<String> = obj.keys().cloned().collect();
            for key in keys {
                let child_path = join(path, &key);
                let child_schema = properties
                    .and_then(|p| p.get(&key))
                    .or(additional.filter(|a| a.is_object()));
                match child_schema {
                    Some(s) => {
                        if let Some(child) = obj.get_mut(&key) {
                            walk(child, s, &child_path, out);
                        }
                    }
                    None if preserve || additional.is_some_and(|a| a.as_bool() == Some(true)) => {}
                    None => {
                        obj.remove(&key);
                        out.unknown.push(child_path);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    walk(item, item_schema, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// Sets the `default` of every property the object leaves out (or sets to
/// `null` where the schema does not allow it), as the apiserver defaults a
/// custom resource before it validates it.
fn apply_defaults(obj: &mut Map<String, Value>, schema: &Value) {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (key, property) in properties {
        let Some(default) = property.get("default") else {
            continue;
        };
        let absent = match obj.get(key) {
            None => true,
            Some(Value::Null) => !flag(property, "nullable"),
            Some(_) => false,
        };
        if absent {
            obj.insert(key.clone(), default.clone());
        }
    }
}

/// A JSON value as Go's `%v` prints it in validation messages.
fn go_value(value: &Value) -> String {
    match value {
        Value::String(text) => format!("{text:?}"),
        Value::Null => "null".to_owned(),
        other => other.to_string(),
    }
}

/// A schema number (`50`, `0.5`) as Go's `%v` prints it.
fn go_number(number: &Value) -> String {
    match number.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        Some(f) => f.to_string(),
        None => number.to_string(),
    }
}

fn invalid(value: &Value, path: &str, rule: &str) -> Cause {
    Cause::new(
        "FieldValueInvalid",
        format!("Invalid value: {}: {path} in body {rule}", go_value(value)),
        path,
    )
}

/// The value constraints of a structural schema (`enum`, bounds, lengths,
/// `pattern`, item and property counts), worded as the apiserver words them.
fn check_value(value: &Value, schema: &Value, path: &str, out: &mut Findings) {
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let listed: Vec<String> = allowed.iter().map(go_value).collect();
        out.causes.push(Cause::new(
            "FieldValueNotSupported",
            format!(
                "Unsupported value: {}: supported values: {}",
                go_value(value),
                listed.join(", ")
            ),
            path,
        ));
    }
    match value {
        Value::Number(number) => {
            let n = number.as_f64().unwrap_or_default();
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
                if flag(schema, "exclusiveMaximum") && n >= max {
                    out.causes.push(invalid(
                        value,
                        path,
                        &format!("should be less than {}", go_number(&schema["maximum"])),
                    ));
                } else if n > max {
                    out.causes.push(invalid(
                        value,
                        path,
                        &format!(
                            "should be less than or equal to {}",
                            go_number(&schema["maximum"])
                        ),
                    ));
                }
            }
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
                if flag(schema, "exclusiveMinimum") && n <= min {
                    out.causes.push(invalid(
                        value,
                        path,
                        &format!("should be greater than {}", go_number(&schema["minimum"])),
                    ));
                } else if n < min {
                    out.causes.push(invalid(
                        value,
                        path,
                        &format!(
                            "should be greater than or equal to {}",
                            go_number(&schema["minimum"])
                        ),
                    ));
                }
            }
            if let Some(factor) = schema.get("multipleOf").and_then(Value::as_f64)
                && factor > 0.0
                && (n / factor).fract().abs() > f64::EPSILON
            {
                out.causes.push(invalid(
                    value,
                    path,
                    &format!(
                        "should be a multiple of {}",
                        go_number(&schema["multipleOf"])
                    ),
                ));
            }
        }
        Value::String(text) => {
            let length = text.chars().count() as u64;
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                && length > max
            {
                out.causes.push(Cause::new(
                    "FieldValueTooLong",
                    format!("Too long: may not be more than {max} bytes"),
                    path,
                ));
            }
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
                && length < min
            {
                out.causes.push(invalid(
                    value,
                    path,
                    &format!("should be at least {min} chars long"),
                ));
            }
            let string_typed = schema
                .get("type")
                .and_then(Value::as_str)
                .is_none_or(|ty| ty == "string");
            if let Some(format) = schema.get("format").and_then(Value::as_str)
                && string_typed
                && crate::formats::check(format, text) == Some(false)
            {
                out.causes.push(Cause::new(
                    "FieldValueInvalid",
                    format!(
                        "Invalid value: {text:?}: {path} in body must be of type {format}: {text:?}"
                    ),
                    path,
                ));
            }
            if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
                let matches = regex::Regex::new(pattern).map(|re| re.is_match(text));
                if matches.is_ok_and(|m| !m) {
                    out.causes
                        .push(invalid(value, path, &format!("should match '{pattern}'")));
                }
            }
        }
        Value::Array(items) => {
            let count = items.len() as u64;
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && count > max
            {
                out.causes.push(Cause::new(
                    "FieldValueTooMany",
                    format!("Too many: {count}: must have at most {max} items"),
                    path,
                ));
            }
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && count < min
            {
                out.causes.push(invalid(
                    value,
                    path,
                    &format!("should have at least {min} items"),
                ));
            }
        }
        Value::Object(fields) => {
            let count = fields.len() as u64;
            if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
                && count > max
            {
                out.causes.push(Cause::new(
                    "FieldValueTooMany",
                    format!("Too many: {count}: must have at most {max} items"),
                    path,
                ));
            }
            if let Some(min) = schema.get("minProperties").and_then(Value::as_u64)
                && count < min
            {
                out.causes.push(invalid(
                    value,
                    path,
                    &format!("should have at least {min} properties"),
                ));
            }
        }
        _ => {}
    }
}

/// Whether a schema declares any `x-kubernetes-validations` rule.
fn has_rules(schema: &Value) -> bool {
    match schema {
        Value::Object(fields) => {
            fields.contains_key("x-kubernetes-validations") || fields.values().any(has_rules)
        }
        Value::Array(items) => items.iter().any(has_rules),
        _ => false,
    }
}

/// Evaluates the CEL rules (`x-kubernetes-validations`) of every node the
/// object has, with `self` bound to the node's value. Transition rules (those
/// that read `oldSelf`) run on updates only, where the node had a value before
/// (`old`, correlated field by field and list-map item by key, as the
/// apiserver correlates them), with `oldSelf` bound to it.
fn check_rules(value: &Value, old: Option<&Value>, schema: &Value, path: &str, out: &mut Findings) {
    if let Some(rules) = schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
    {
        for rule in rules {
            let Some(expression) = rule.get("rule").and_then(Value::as_str) else {
                continue;
            };
            let transition = expression.contains("oldSelf");
            let optional_old =
                transition && rule.get("optionalOldSelf").and_then(Value::as_bool) == Some(true);
            if transition && old.is_none() && !optional_old {
                continue;
            }
            let field = match rule.get("fieldPath").and_then(Value::as_str) {
                Some(extra) => format!("{path}{extra}"),
                None => path.to_owned(),
            };
            let reason =
                rule.get("reason")
                    .and_then(Value::as_str)
                    .map_or("FieldValueInvalid", |reason| match reason {
                        "FieldValueRequired" => "FieldValueRequired",
                        "FieldValueDuplicate" => "FieldValueDuplicate",
                        "FieldValueForbidden" => "FieldValueForbidden",
                        _ => "FieldValueInvalid",
                    });
            let message = rule
                .get("message")
                .and_then(Value::as_str)
                .map_or_else(|| format!("failed rule: {expression}"), str::to_owned);
            match evaluate(expression, value, old.filter(|_| transition), optional_old) {
                Ok(true) => {}
                Ok(false) => out.causes.push(Cause::new(
                    reason,
                    format!("Invalid value: {message}"),
                    field,
                )),
                Err(error) => out.causes.push(Cause::new(
                    "FieldValueInvalid",
                    format!("Invalid value: rule evaluation error: {error}"),
                    field,
                )),
            }
        }
    }
    match value {
        Value::Object(fields) => {
            for (key, child) in fields {
                if let Some(child_schema) = field_schema(schema, key) {
                    let old_child = old.and_then(|old| old.get(key));
                    check_rules(child, old_child, child_schema, &join(path, key), out);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                let keys = list_map_keys(schema);
                for (index, item) in items.iter().enumerate() {
                    let old_item = keys.as_ref().and_then(|keys| {
                        old?.as_array()?.iter().find(|candidate| {
                            keys.iter().all(|key| candidate.get(key) == item.get(key))
                        })
                    });
                    check_rules(
                        item,
                        old_item,
                        item_schema,
                        &format!("{path}[{index}]"),
                        out,
                    );
                }
            }
        }
        _ => {}
    }
}

/// The schema of an object's field `key`: its property, else `additionalProperties`.
fn field_schema<'a>(schema: &'a Value, key: &str) -> Option<&'a Value> {
    schema
        .get("properties")
        .and_then(|properties| properties.get(key))
        .or_else(|| {
            schema
                .get("additionalProperties")
                .filter(|additional| additional.is_object())
        })
}

/// Checks that the items of every `x-kubernetes-list-type: set` list are unique, and the keys
/// of every `map` list: each value (or key) seen a second time is a duplicate, reported once,
/// at its second position.
fn check_list_types(value: &Value, schema: &Value, path: &str, out: &mut Findings) {
    match value {
        Value::Object(fields) => {
            for (key, child) in fields {
                if let Some(child_schema) = field_schema(schema, key) {
                    check_list_types(child, child_schema, &join(path, key), out);
                }
            }
        }
        Value::Array(items) => {
            let identities: Option<Vec<Value>> =
                match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
                    Some("set") => Some(items.clone()),
                    Some("map") => {
                        let keys = list_map_keys(schema).unwrap_or_default();
                        Some(
                            items
                                .iter()
                                .map(|item| {
                                    Value::Object(
                                        keys.iter()
                                            .filter_map(|key| {
                                                Some(((*key).to_owned(), item.get(*key)?.clone()))
                                            })
                                            .collect(),
                                    )
                                })
                                .collect(),
                        )
                    }
                    _ => None,
                };
            if let Some(identities) = identities {
                let mut seen: Vec<(&Value, usize)> = Vec::new();
                for (index, identity) in identities.iter().enumerate() {
                    match seen.iter_mut().find(|(value, _)| *value == identity) {
                        Some((_, times)) => {
                            *times += 1;
                            if *times == 2 {
                                out.causes.push(Cause::new(
                                    "FieldValueDuplicate",
                                    format!("Duplicate value: {}", duplicate_value(identity)),
                                    format!("{path}[{index}]"),
                                ));
                            }
                        }
                        None => seen.push((identity, 1)),
                    }
                }
            }
            if let Some(item_schema) = schema.get("items") {
                for (index, item) in items.iter().enumerate() {
                    check_list_types(item, item_schema, &format!("{path}[{index}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// A duplicate as the apiserver's field errors print it: scalars as `go_value` does, a
/// list-map key as Go prints a `map[string]interface {}`.
fn duplicate_value(value: &Value) -> String {
    let Value::Object(fields) = value else {
        return go_value(value);
    };
    let entries: Vec<String> = fields
        .iter()
        .map(|(key, value)| {
            let shown = match value {
                Value::Number(n) if n.is_i64() || n.is_u64() => format!("int64({n})"),
                Value::Number(n) => format!("float64({n})"),
                other => go_value(other),
            };
            format!("{key:?}:{shown}")
        })
        .collect();
    format!("map[string]interface {{}}{{{}}}", entries.join(", "))
}

/// The keys of a list whose `x-kubernetes-list-type` is `map`: its items correlate with the
/// old object's by them. Other lists' items do not correlate.
fn list_map_keys(schema: &Value) -> Option<Vec<&str>> {
    if schema.get("x-kubernetes-list-type").and_then(Value::as_str) != Some("map") {
        return None;
    }
    let keys: Vec<&str> = schema
        .get("x-kubernetes-list-map-keys")?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    (!keys.is_empty()).then_some(keys)
}

/// The CEL rules of a CRD schema the apiextensions server refuses, as causes at their
/// schema path (`...properties[spec].x-kubernetes-validations[0].rule`): a rule that does not
/// compile, a transition rule (one that reads `oldSelf`) under the items of a list that is not
/// a list map (whose old and new items cannot be told apart), and `optionalOldSelf` on a rule
/// that does not read `oldSelf`.
pub(crate) fn uncompilable_rules(schema: &Value, path: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    refused_rules(schema, path, None, &mut causes);
    causes
}

fn refused_rules(schema: &Value, path: &str, uncorrelatable: Option<&str>, out: &mut Vec<Cause>) {
    let Value::Object(fields) = schema else {
        return;
    };
    if let Some(rules) = fields
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
    {
        for (index, rule) in rules.iter().enumerate() {
            let Some(expression) = rule.get("rule").and_then(Value::as_str) else {
                continue;
            };
            let at = format!("{path}.x-kubernetes-validations[{index}]");
            if let Err(error) = cel::Program::compile(expression) {
                out.push(Cause::new(
                    "FieldValueInvalid",
                    format!("Invalid value: {expression:?}: compilation failed: {error}"),
                    format!("{at}.rule"),
                ));
                continue;
            }
            match (expression.contains("oldSelf"), uncorrelatable) {
                (true, Some(within)) => out.push(Cause::new(
                    "FieldValueInvalid",
                    format!(
                        "Invalid value: {expression:?}: oldSelf cannot be used on the uncorrelatable portion of the schema within {within}"
                    ),
                    format!("{at}.rule"),
                )),
                (false, _) => {
                    if let Some(optional) = rule.get("optionalOldSelf").and_then(Value::as_bool) {
                        out.push(Cause::new(
                            "FieldValueInvalid",
                            format!(
                                "Invalid value: {optional}: may not be set if oldSelf is not used in rule"
                            ),
                            format!("{at}.optionalOldSelf"),
                        ));
                    }
                }
                _ => {}
            }
        }
    }
    if let Some(properties) = fields.get("properties").and_then(Value::as_object) {
        for (key, child) in properties {
            refused_rules(
                child,
                &format!("{path}.properties[{key}]"),
                uncorrelatable,
                out,
            );
        }
    }
    if let Some(child) = fields.get("additionalProperties").filter(|c| c.is_object()) {
        refused_rules(
            child,
            &format!("{path}.additionalProperties"),
            uncorrelatable,
            out,
        );
    }
    if let Some(child) = fields.get("items").filter(|c| c.is_object()) {
        // Old and new items are correlated by key in a list map only; the highest such list
        // is the one named.
        let list_map = fields.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map");
        let within = uncorrelatable.or((!list_map).then_some(path));
        refused_rules(child, &format!("{path}.items"), within, out);
    }
}

/// One CEL rule over `self` (and `oldSelf`, for a transition rule: the old value, or with
/// `optionalOldSelf` an optional of it); `Ok(false)` when it does not hold.
fn evaluate(
    expression: &str,
    value: &Value,
    old: Option<&Value>,
    optional_old: bool,
) -> Result<bool, String> {
    let program = cel::Program::compile(expression).map_err(|error| error.to_string())?;
    let mut context = cel::Context::default();
    context
        .add_variable("self", value.clone())
        .map_err(|error| error.to_string())?;
    if optional_old {
        let optional = match old {
            Some(old) => cel::objects::OptionalValue::of(
                cel::to_value(old).map_err(|error| error.to_string())?,
            ),
            None => cel::objects::OptionalValue::none(),
        };
        context
            .add_variable_from_value("oldSelf", cel::Value::Opaque(std::sync::Arc::new(optional)));
    } else if let Some(old) = old {
        context
            .add_variable("oldSelf", old.clone())
            .map_err(|error| error.to_string())?;
    }
    match program
        .execute(&context)
        .map_err(|error| error.to_string())?
    {
        cel::Value::Bool(holds) => Ok(holds),
        other => Err(format!("rule did not evaluate to a bool: {other:?}")),
    }
}

/// Go's `%T` for a JSON value, as the apiserver prints it in accessor errors.
fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() || n.is_u64() => "int64",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// The scale subresource's check of a replicas path (`.spec.replicas`): an integer from 0 to 2^31-1.
pub(crate) fn check_replicas(obj: &Value, path: &str) -> Vec<Cause> {
    let parts: Vec<&str> = path.trim_start_matches('.').split('.').collect();
    let Some(v) = crate::json::get_path(obj, &parts) else {
        return Vec::new();
    };
    let dotted = format!(".{}", parts.join("."));
    match v.as_i64() {
        Some(n) if n < 0 => {
            vec![Cause::new(
                "FieldValueInvalid",
                format!("Invalid value: {n}: should be a non-negative integer"),
                path,
            )]
        }
        Some(n) if n > i64::from(i32::MAX) => vec![Cause::new(
            "FieldValueInvalid",
            format!(
                "Invalid value: {n}: should be less than or equal to {}",
                i32::MAX
            ),
            path,
        )],
        Some(_) => Vec::new(),
        None => {
            let shown = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            vec![Cause::new(
                "FieldValueInvalid",
                format!(
                    "Invalid value: 0: {dotted} accessor error: {shown} is of the type {}, expected int64",
                    go_type(v)
                ),
                path,
            )]
        }
    }
}

/// Prunes unknown fields from a custom resource and checks it against its `openAPIV3Schema`;
/// `apiVersion`, `kind` and `metadata` are the server's and left alone.
pub(crate) fn check(
    obj: &mut Map<String, Value>,
    old: Option<&Map<String, Value>>,
    schema: &Value,
) -> Findings {
    let mut out = Findings::default();
    apply_defaults(obj, schema);
    let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
    let properties = schema.get("properties").and_then(Value::as_object);
    let keys: Vec<String> = obj.keys().cloned().collect();
    for key in keys {
        if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        match properties.and_then(|p| p.get(&key)) {
            Some(s) => {
                if let Some(child) = obj.get_mut(&key) {
                    walk(child, s, &key, &mut out);
                }
            }
            None if preserve => {}
            None => {
                obj.remove(&key);
                out.unknown.push(key);
            }
        }
    }
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for r in required.iter().filter_map(Value::as_str) {
            if !obj.contains_key(r) && !matches!(r, "apiVersion" | "kind" | "metadata") {
                out.causes
                    .push(Cause::new("FieldValueRequired", "Required value", r));
            }
        }
    }
    // Sets and list maps hold no duplicates; an update of an object that already held some is
    // not held to it (the apiserver ratchets this check).
    let properties = schema.get("properties").and_then(Value::as_object);
    let list_types = |obj: &Map<String, Value>, out: &mut Findings| {
        for (key, child) in obj.iter() {
            if let Some(child_schema) = properties.and_then(|p| p.get(key)) {
                check_list_types(child, child_schema, key, out);
            }
        }
    };
    let old_duplicates = old.is_some_and(|old| {
        let mut found = Findings::default();
        list_types(old, &mut found);
        !found.causes.is_empty()
    });
    if !old_duplicates {
        list_types(obj, &mut out);
    }
    if has_rules(schema) {
        // Only errors that leave values the rules cannot read (a wrong type, a missing or
        // unsupported value, too long, too many) keep them from running.
        let blocking = out.causes.iter().any(|cause| {
            matches!(
                cause.reason,
                "FieldValueNotSupported"
                    | "FieldValueRequired"
                    | "FieldValueTooLong"
                    | "FieldValueTooMany"
                    | "FieldValueTypeInvalid"
            )
        });
        if !blocking {
            let properties = schema.get("properties").and_then(Value::as_object);
            for (key, child) in obj.iter() {
                if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(child_schema) = properties.and_then(|p| p.get(key)) {
                    let old_child = old.and_then(|old| old.get(key));
                    check_rules(child, old_child, child_schema, key, &mut out);
                }
            }
            if let Some(rules) = schema.get("x-kubernetes-validations") {
                let root = serde_json::json!({"x-kubernetes-validations": rules});
                let old = old.map(|old| Value::Object(old.clone()));
                check_rules(
                    &Value::Object(obj.clone()),
                    old.as_ref(),
                    &root,
                    "<nil>",
                    &mut out,
                );
            }
        } else {
            out.causes.push(Cause::new(
                "FieldValueInvalid",
                "Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
                "<nil>",
            ));
        }
    }
    out
}

/// `metadata` fields of every object.
const OBJECT_META: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// Top-level fields of the built-in types, besides `apiVersion`, `kind` and `metadata`.
fn builtin_fields(storage: &str) -> Option<&'static [&'static str]> {
    Some(match storage {
        "/configmaps" => &["data", "binaryData", "immutable"],
        "/secrets" => &["data", "stringData", "type", "immutable"],
        "/serviceaccounts" => &[
            "secrets",
            "imagePullSecrets",
            "automountServiceAccountToken",
        ],
        "/events" => &[
            "involvedObject",
            "reason",
            "message",
            "source",
            "firstTimestamp",
            "lastTimestamp",
            "count",
            "type",
            "eventTime",
            "series",
            "action",
            "related",
            "reportingComponent",
            "reportingInstance",
        ],
        "coordination.k8s.io/leases" => &["spec"],
        "rbac.authorization.k8s.io/roles" => &["rules"],
        "rbac.authorization.k8s.io/clusterroles" => &["rules", "aggregationRule"],
        "rbac.authorization.k8s.io/rolebindings"
        | "rbac.authorization.k8s.io/clusterrolebindings" => &["subjects", "roleRef"],
        "/namespaces"
        | "/pods"
        | "/services"
        | "apps/deployments"
        | "apps/replicasets"
        | "apps/statefulsets"
        | "apps/daemonsets"
        | "apiextensions.k8s.io/customresourcedefinitions" => &["spec", "status"],
        _ => return None,
    })
}

/// Drops the top-level and `metadata` fields a built-in type does not have.
pub(crate) fn check_builtin(storage: &str, obj: &mut Map<String, Value>) -> Findings {
    let mut out = Findings::default();
    let Some(known) = builtin_fields(storage) else {
        return out;
    };
    let keys: Vec<String> = obj.keys().cloned().collect();
    for key in keys {
        if !matches!(key.as_str(), "apiVersion" | "kind" | "metadata")
            && !known.contains(&key.as_str())
        {
            obj.remove(&key);
            out.unknown.push(key);
        }
    }
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        let keys: Vec<String> = meta.keys().cloned().collect();
        for key in keys {
            if !OBJECT_META.contains(&key.as_str()) {
                meta.remove(&key);
                out.unknown.push(format!("metadata.{key}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prunes_unknown_fields_and_reports_type_errors() {
        let schema = json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["size"], "properties": {
                "size": {"type": "integer"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            }},
        }});
        let mut obj = json!({"metadata": {"name": "x"}, "spec": {"size": 2, "extra": 1, "labels": {"a": "b"}, "free": {"any": 1}}, "junk": true})
            .as_object()
            .cloned()
            .unwrap();
        let f = check(&mut obj, None, &schema);
        assert_eq!(f.unknown, ["junk", "spec.extra"]);
        assert!(f.causes.is_empty(), "{:?}", f.causes);
        assert_eq!(obj["spec"]["free"]["any"], 1);
        let mut bad = json!({"spec": {"size": "two"}})
            .as_object()
            .cloned()
            .unwrap();
        let f = check(&mut bad, None, &schema);
        assert_eq!(f.causes[0].reason, "FieldValueTypeInvalid");
        assert_eq!(
            f.causes[0].message,
            "Invalid value: \"string\": spec.size in body must be of type integer: \"string\""
        );
        let mut missing = json!({"spec": {}}).as_object().cloned().unwrap();
        assert_eq!(
            check(&mut missing, None, &schema).causes[0].field,
            "spec.size"
        );
    }

    #[test]
    fn string_formats_are_checked_and_unknown_ones_ignored() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object",
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "at": {"type": "string", "format": "date-time"},
                "free": {"type": "string", "format": "made-up"},
            },
        }}});
        let mut obj = json!({"spec": {"id": "nope", "at": "2026-12-02T10:00:00Z", "free": "x"}})
            .as_object()
            .cloned()
            .unwrap();
        let causes = check(&mut obj, None, &schema).causes;
        let found: Vec<(&str, &str, &str)> = causes
            .iter()
            .map(|c| (c.reason, c.message.as_str(), c.field.as_str()))
            .collect();
        assert_eq!(
            found,
            [(
                "FieldValueInvalid",
                "Invalid value: \"nope\": spec.id in body must be of type uuid: \"nope\"",
                "spec.id"
            )]
        );
    }

    #[test]
    fn optional_old_self_rules_run_on_create_with_no_old_value() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object",
            "properties": {"size": {"type": "integer", "x-kubernetes-validations": [
                {"rule": "oldSelf.hasValue() ? self >= oldSelf.value() : self == 1",
                 "message": "starts at 1 and only grows", "optionalOldSelf": true},
            ]}},
        }}});
        let causes = |size: i64, old: Option<i64>| {
            let mut obj = json!({"spec": {"size": size}})
                .as_object()
                .cloned()
                .unwrap();
            let old = old.map(|o| json!({"spec": {"size": o}}).as_object().cloned().unwrap());
            check(&mut obj, old.as_ref(), &schema)
                .causes
                .into_iter()
                .map(|c| c.message)
                .collect::<Vec<_>>()
        };
        assert!(causes(1, None).is_empty());
        assert_eq!(
            causes(2, None),
            ["Invalid value: starts at 1 and only grows"]
        );
        assert!(causes(5, Some(3)).is_empty());
        assert_eq!(
            causes(2, Some(3)),
            ["Invalid value: starts at 1 and only grows"]
        );
    }

    #[test]
    fn transition_rules_are_refused_where_old_items_cannot_be_told_apart() {
        let rule = |extra: Value| {
            let mut rule = json!({"rule": "self == oldSelf"});
            rule.as_object_mut()
                .unwrap()
                .extend(extra.as_object().cloned().unwrap());
            rule
        };
        let schema = json!({"type": "object", "properties": {
            "atomic": {"type": "array", "items": {"type": "object", "properties": {
                "deep": {"type": "string", "x-kubernetes-validations": [rule(json!({}))]},
            }}},
            "keyed": {"type": "array", "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "x-kubernetes-validations": [rule(json!({}))],
                    "properties": {"name": {"type": "string"}}}},
            "plain": {"type": "string", "x-kubernetes-validations": [
                {"rule": "self != ''", "optionalOldSelf": true},
            ]},
        }});
        let causes = uncompilable_rules(&schema, "root");
        let found: Vec<(&str, &str)> = causes
            .iter()
            .map(|c| (c.field.as_str(), c.message.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                (
                    "root.properties[atomic].items.properties[deep].x-kubernetes-validations[0].rule",
                    "Invalid value: \"self == oldSelf\": oldSelf cannot be used on the uncorrelatable portion of the schema within root.properties[atomic]"
                ),
                (
                    "root.properties[plain].x-kubernetes-validations[0].optionalOldSelf",
                    "Invalid value: true: may not be set if oldSelf is not used in rule"
                ),
            ]
        );
    }

    #[test]
    fn rules_still_run_beside_errors_that_do_not_block_them() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object",
            "x-kubernetes-validations": [{"rule": "self.size <= 10", "message": "too big"}],
            "properties": {
                "size": {"type": "integer", "maximum": 50},
                "mode": {"type": "string", "enum": ["a"]},
            },
        }}});
        let reasons = |spec: Value| -> Vec<(&'static str, String)> {
            let mut obj = json!({"spec": spec}).as_object().cloned().unwrap();
            check(&mut obj, None, &schema)
                .causes
                .into_iter()
                .map(|cause| (cause.reason, cause.message))
                .collect()
        };
        // Out of bounds (Invalid) does not block the rule...
        let found = reasons(json!({"size": 60}));
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found.iter().any(|(_, message)| message.contains("too big")),
            "{found:?}"
        );
        // ...an unsupported value does, and says so.
        let found = reasons(json!({"size": 60, "mode": "b"}));
        assert!(
            found
                .iter()
                .any(|(_, message)| message.contains("some validation rules were not checked")),
            "{found:?}"
        );
        assert!(
            !found.iter().any(|(_, message)| message.contains("too big")),
            "{found:?}"
        );
    }

    #[test]
    fn sets_and_list_maps_hold_no_duplicates() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["port"],
                "items": {"type": "object", "properties": {"port": {"type": "integer"}, "name": {"type": "string"}}}},
        }}}});
        let mut obj = json!({"spec": {
            "tags": ["a", "b", "a", "a"],
            "ports": [{"port": 80, "name": "x"}, {"port": 80, "name": "y"}],
        }})
        .as_object()
        .cloned()
        .unwrap();
        let causes: Vec<(String, String)> = check(&mut obj, None, &schema)
            .causes
            .into_iter()
            .map(|cause| (cause.field, cause.message))
            .collect();
        assert_eq!(
            causes,
            [
                (
                    "spec.ports[1]".to_owned(),
                    "Duplicate value: map[string]interface {}{\"port\":int64(80)}".to_owned()
                ),
                (
                    "spec.tags[2]".to_owned(),
                    "Duplicate value: \"a\"".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn built_in_types_drop_unknown_top_level_and_metadata_fields() {
        let mut cm = json!({"kind": "ConfigMap", "metadata": {"name": "x", "lables": {}}, "data": {}, "datas": {}})
            .as_object()
            .cloned()
            .unwrap();
        let f = check_builtin("/configmaps", &mut cm);
        assert_eq!(f.unknown, ["datas", "metadata.lables"]);
        assert_eq!(
            Value::Object(cm),
            json!({"kind": "ConfigMap", "metadata": {"name": "x"}, "data": {}})
        );
    }
}
