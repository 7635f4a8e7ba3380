//! What both the step graph and artifact handles need to know about a step output: the
//! index of the node that produces it and its declaration with the cacher that stores it.
//!
//! It sits below `graph.rs` (which builds nodes from these) and `artifact.rs` (whose bound
//! handles load through an [`OutputSpec`]), so those two do not import each other both ways.

use std::any::Any;
use std::io::{Read, Write};
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::cacher::Cacher;
use crate::error::BoxError;
use crate::key::OutputDecl;

/// Index of a node in its graph.
pub type NodeId = usize;

type SaveFn = dyn Fn(&(dyn Any + Send + Sync), &mut dyn Write) -> Result<Option<serde_json::Value>, BoxError>
    + Send
    + Sync;
type LoadFn = dyn Fn(&mut dyn Read) -> Result<Box<dyn Any + Send + Sync>, BoxError> + Send + Sync;

/// One declared output: its name, type and the cacher that stores it.
pub struct OutputSpec {
    pub(crate) decl: OutputDecl,
    save: Box<SaveFn>,
    load: Box<LoadFn>,
}

impl OutputSpec {
    /// Declares output `name` of type `T`, stored by `cacher`. The declaration (and so the
    /// cache key) holds `T`'s name and the fingerprint of its serde shape.
    pub fn new<T, C>(name: &'static str, cacher: C) -> Self
    where
        T: DeserializeOwned + Send + Sync + 'static,
        C: Cacher<T>,
    {
        let cacher = Arc::new(cacher);
        let decl = OutputDecl {
            name: name.to_string(),
            type_name: std::any::type_name::<T>().to_string(),
            shape: crate::shape::shape_of::<T>().fingerprint().to_owned(),
            cacher: cacher.id().to_string(),
            cacher_version: cacher.version(),
        };
        let saver = Arc::clone(&cacher);
        OutputSpec {
            decl,
            save: Box::new(move |value, out| {
                let value = value
                    .downcast_ref::<T>()
                    .ok_or("internal error: output value has an unexpected type")?;
                saver.save(value, out)?;
                Ok(saver.metadata(value))
            }),
            load: Box::new(move |input| {
                Ok(Box::new(cacher.load(input)?) as Box<dyn Any + Send + Sync>)
            }),
        }
    }

    pub(crate) fn cacher_id(&self) -> &str {
        &self.decl.cacher
    }

    pub(crate) fn save(
        &self,
        value: &(dyn Any + Send + Sync),
        out: &mut dyn Write,
    ) -> Result<Option<serde_json::Value>, BoxError> {
        (self.save)(value, out)
    }

    pub(crate) fn load(
        &self,
        input: &mut dyn Read,
    ) -> Result<Box<dyn Any + Send + Sync>, BoxError> {
        (self.load)(input)
    }
}
