//! The methods each path answers, for the `Allow` header of a 405, read off the OpenAPI
//! document's operations.

use poem_openapi::OpenApi;

/// The methods each path answers, for the `Allow` header of a 405 (RFC 9110 §15.5.6): from the
/// documented operations, plus the routes outside the document (the live feeds, the spec).
#[derive(Debug, Default)]
pub struct AllowedMethods(Vec<(Vec<String>, String)>);

impl AllowedMethods {
    /// The table of `T`'s operations and of `extra` (`path`, `Allow` value) routes.
    pub fn of<T: OpenApi>(extra: &[(&str, &str)]) -> Self {
        let mut table: Vec<(Vec<String>, Vec<String>)> = Vec::new();
        for path in T::meta().into_iter().flat_map(|api| api.paths) {
            let methods = path.operations.iter().map(|op| op.method.to_string());
            let segments = segments(&path.path);
            match table.iter_mut().find(|(s, _)| *s == segments) {
                Some((_, known)) => known.extend(methods),
                None => table.push((segments, methods.collect())),
            }
        }
        let mut allowed: Vec<(Vec<String>, String)> = table
            .into_iter()
            .map(|(segments, mut methods)| {
                methods.sort();
                methods.dedup();
                (segments, methods.join(", "))
            })
            .collect();
        allowed.extend(extra.iter().map(|(p, m)| (segments(p), (*m).to_owned())));
        Self(allowed)
    }

    /// What `path` (a request's, without query) answers, when it is a known route.
    pub fn for_path(&self, path: &str) -> Option<&str> {
        let asked: Vec<&str> = path.trim_matches('/').split('/').collect();
        self.0
            .iter()
            .find(|(template, _)| {
                template.len() == asked.len()
                    && template.iter().zip(&asked).all(|(t, a)| {
                        t == a || ((t.starts_with('{') || t.starts_with(':')) && !a.is_empty())
                    })
            })
            .map(|(_, methods)| methods.as_str())
    }
}

fn segments(path: &str) -> Vec<String> {
    path.trim_matches('/')
        .split('/')
        .map(str::to_owned)
        .collect()
}
