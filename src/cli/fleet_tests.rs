use super::*;

fn spec(path: &str, yaml: &str) -> Desired {
    crate::spec::load_str(Path::new(path), yaml)
        .and_then(|loaded| loaded.validate())
        .map(|validated| validated.spec)
        .unwrap_or_else(|_| panic!("{path} is not valid"))
}

#[test]
fn clashes_on_one_engine_name_both_files() {
    let a = spec(
        "a.yaml",
        "version: 1\nname: alpha\npostgres: { image: 'postgres:17', port: 5433, volume: shared-data }\n",
    );
    let b = spec(
        "b.yaml",
        "version: 1\nname: beta\npostgres: { image: 'postgres:17', port: 5433, volume: shared-data }\n",
    );
    let c = spec(
        "c.yaml",
        "version: 1\nname: gamma\npostgres: { image: 'postgres:17', port: 5433, volume: shared-data }\n",
    );
    let one = Some("unix:///var/run/docker.sock".to_owned());
    let other = Some("ssh://db1".to_owned());
    let found = conflicts(&[(a.clone(), one.clone()), (b, one.clone()), (c, other)]);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found.iter().any(|clash| clash
        == "a.yaml and b.yaml both claim volume `shared-data` on engine unix:///var/run/docker.sock"));
    assert!(found.iter().any(|clash| clash.contains("port `5433`")));
    // the same spec twice on different engines is no clash
    assert!(conflicts(&[(a.clone(), one), (a, Some("tcp://h:2376".to_owned()))]).is_empty());
}

#[test]
fn the_worst_exit_wins() {
    assert_eq!(worst([0, 0]), 0);
    assert_eq!(worst([0, 2, 0]), 2);
    assert_eq!(worst([2, 1, 0]), 1);
    assert_eq!(worst([0, 101]), 1);
    assert_eq!(worst([]), 0);
}

#[test]
fn a_directory_is_its_yaml_files_in_order() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["b.yaml", "a.yml", "notes.txt"] {
        std::fs::write(dir.path().join(name), "").unwrap();
    }
    let files = expand(&[dir.path().to_owned()]).unwrap();
    let names: Vec<_> = files
        .iter()
        .map(|file| file.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["a.yml", "b.yaml"]);
    assert!(expand(&[PathBuf::from("-")]).is_err());
}
