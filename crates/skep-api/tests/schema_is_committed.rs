//! `crds/bulkjob.schema.json` is generated; this fails when it is stale.

#[test]
fn committed_schema_matches_the_types() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../crds/bulkjob.schema.json");
    let committed = std::fs::read_to_string(path).expect("crds/bulkjob.schema.json is missing");
    assert!(
        committed == skep_api::schema_pretty(),
        "crds/bulkjob.schema.json is stale: regenerate it with `cargo run -p skep -- crd > crds/bulkjob.schema.json`"
    );
}

#[test]
fn schema_describes_the_document() {
    let schema = skep_api::schema();
    let props = &schema["properties"];
    for field in ["apiVersion", "kind", "metadata", "spec", "status"] {
        assert!(props.get(field).is_some(), "schema lacks {field}");
    }
    let required: Vec<&str> = schema["required"]
        .as_array()
        .expect("required list")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(required, vec!["apiVersion", "kind", "metadata", "spec"]);
}
