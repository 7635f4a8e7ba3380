//! The artifact-bytes contract against a real S3 server (Garage, started by
//! `scripts/services.sh`): `PIPELINE_TEST_S3=s3://BUCKET/PREFIX` and the standard `AWS_*`
//! variables name it. Without the variable these tests say so and pass, unless
//! `PIPELINE_TEST_REQUIRE_SERVICES=1`, which makes a missing server a failure.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;

use super::contract::{artifact_store, Backend};
use super::{ArtifactStore, ObjectArtifacts};
use crate::config::{ArtifactLocation, StoreConfig};

/// The test bucket and a prefix of this process, or `None` (skip) without a server.
fn test_bucket(test: &str) -> Option<(String, String)> {
    let Some(url) = std::env::var("PIPELINE_TEST_S3")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        if std::env::var("PIPELINE_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!("{test}: PIPELINE_TEST_S3 is not set but PIPELINE_TEST_REQUIRE_SERVICES=1; start Garage with scripts/services.sh");
        }
        eprintln!("{test}: skipped, PIPELINE_TEST_S3 is not set (scripts/test.sh starts Garage and sets it)");
        return None;
    };
    let config = StoreConfig::new("sqlite:/unused/metadata.sqlite", Some(&url)).unwrap();
    let ArtifactLocation::S3 { bucket, prefix } = config.artifacts() else {
        panic!("PIPELINE_TEST_S3 is not an s3:// URL");
    };
    Some((bucket.clone(), prefix.clone()))
}

fn s3_backend(bucket: &str, prefix: &str) -> ObjectArtifacts {
    let s3 = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .build()
        .expect("S3 client from AWS_* variables");
    ObjectArtifacts::new(Arc::new(s3), prefix, format!("s3://{bucket}/{prefix}")).unwrap()
}

/// Empties its prefix when the test ends.
struct Cleanup(ObjectArtifacts);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(blobs) = self.0.list() {
            for b in blobs {
                let _ = self.0.delete(b.hash);
            }
        }
    }
}

#[test]
fn garage_keeps_the_artifact_store_contract() {
    let Some((bucket, prefix)) = test_bucket("garage_keeps_the_artifact_store_contract") else {
        return;
    };
    static NEXT: AtomicU32 = AtomicU32::new(0);
    artifact_store(|| {
        let prefix = format!(
            "{prefix}/contract-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let store = s3_backend(&bucket, &prefix);
        let raw = store.clone();
        Backend {
            store: Arc::new(store.clone()),
            // A raw `PUT` over the blob, as someone with bucket access could do.
            tamper: Some(Box::new(move |hash, bytes| raw.overwrite(hash, bytes))),
            guard: Some(Box::new(Cleanup(store))),
        }
    });
}
