//! Golden tests: the rendered ruleset and the per-service-port view of the example cluster, for
//! each node. A change in what we program shows up here as a reviewed snapshot change.

use integration::example;

#[test]
fn example_cluster_ruleset_node_a() {
    let (_, rules) = example("examples/cluster.yaml", "node-a");
    insta::assert_snapshot!(ruleset::render(&rules));
}

#[test]
fn example_cluster_ruleset_node_b() {
    let (_, rules) = example("examples/cluster.yaml", "node-b");
    insta::assert_snapshot!(ruleset::render(&rules));
}

#[test]
fn example_cluster_view_node_a() {
    let (services, _) = example("examples/cluster.yaml", "node-a");
    assert!(services.errors.is_empty(), "{:?}", services.errors);
    insta::assert_json_snapshot!(services);
}

#[test]
fn broken_examples_ruleset_and_errors() {
    let (services, rules) = example("examples/bad", "node-a");
    let errors: Vec<String> = services.errors.iter().map(ToString::to_string).collect();
    insta::assert_snapshot!("broken_examples_errors", errors.join("\n"));
    insta::assert_snapshot!("broken_examples_ruleset", ruleset::render(&rules));
}
