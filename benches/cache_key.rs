//! Micro-benchmarks of what a cache lookup computes before it touches the store: the cache
//! key from its components, the canonical hash of parameters, and content hashing.
//!
//! `cargo bench --bench cache_key`

use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::io::Write;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pipeline::store::HashingWriter;
use pipeline::{canonical, Hash128, InputComponent, KeyComponents, OutputDecl};

fn components(inputs: usize) -> KeyComponents {
    KeyComponents {
        format: 1,
        step: "svc_trainer".into(),
        module: String::new(),
        code_signature: format!("{:016x}", 0x1234_5678_9abc_def0u64),
        code_parts: Vec::new(),
        outputs: vec![OutputDecl {
            name: "output".into(),
            type_name: "digits::Svc".into(),
            shape: "0123456789abcdef0123456789abcdef".into(),
            cacher: "bincode".into(),
            cacher_version: 1,
        }],
        inputs: (0..inputs)
            .map(|i| {
                if i % 2 == 0 {
                    InputComponent::Artifact {
                        name: format!("input_{i}"),
                        content_hash: Hash128::of(&i.to_le_bytes()).to_hex(),
                        producer: "loader".into(),
                    }
                } else {
                    InputComponent::Parameter {
                        name: format!("param_{i}"),
                        type_name: "f64".into(),
                        shape: "0123456789abcdef0123456789abcdef".into(),
                        hash: Hash128::of(&i.to_le_bytes()).to_hex(),
                        value: serde_json::json!(0.5),
                        text: None,
                        ignored: false,
                        secret: false,
                    }
                }
            })
            .collect(),
    }
}

fn cache_key(c: &mut Criterion) {
    let mut g = c.benchmark_group("cache_key");
    for inputs in [1usize, 4, 16] {
        let k = components(inputs);
        g.bench_function(format!("{inputs}_inputs"), |b| {
            b.iter(|| black_box(&k).cache_key())
        });
    }
    g.finish();
}

fn parameter_hash(c: &mut Criterion) {
    let mut g = c.benchmark_group("parameter_hash");
    let scalar = 0.001f64;
    g.bench_function("f64", |b| {
        b.iter(|| Hash128::of(&canonical::to_canonical_bytes(black_box(&scalar)).unwrap()))
    });
    let vector: Vec<f64> = (0..1000).map(|i| i as f64).collect();
    g.bench_function("vec_1000_f64", |b| {
        b.iter(|| Hash128::of(&canonical::to_canonical_bytes(black_box(&vector)).unwrap()))
    });
    let map: HashMap<String, f64> = (0..100).map(|i| (format!("key{i}"), i as f64)).collect();
    g.bench_function("hashmap_100", |b| {
        b.iter(|| Hash128::of(&canonical::to_canonical_bytes(black_box(&map)).unwrap()))
    });
    let sorted: BTreeMap<String, f64> = map.clone().into_iter().collect();
    g.bench_function("btreemap_100", |b| {
        b.iter(|| Hash128::of(&canonical::to_canonical_bytes(black_box(&sorted)).unwrap()))
    });
    g.finish();
}

fn content_hash(c: &mut Criterion) {
    let bytes: Vec<u8> = (0..16usize << 20).map(|i| (i * 31 % 251) as u8).collect();
    let mut g = c.benchmark_group("content_hash_16MiB");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.sample_size(20);
    g.bench_function("xxh3_128_one_shot", |b| {
        b.iter(|| xxhash_rust::xxh3::xxh3_128(black_box(&bytes)))
    });
    for (label, chunk) in [
        ("store_writer_1MiB_writes", 1usize << 20),
        ("store_writer_4B_writes", 4),
    ] {
        g.bench_function(label, |b| {
            b.iter_batched(
                || HashingWriter::new(std::io::sink()),
                |mut w| {
                    for c in bytes.chunks(chunk) {
                        w.write_all(c).unwrap();
                    }
                    w.finish().unwrap().1
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, cache_key, parameter_hash, content_hash);
criterion_main!(benches);
