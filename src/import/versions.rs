//! Image Builder version selectors on component references (`1.x.x`,
//! `1.2.x`, `x.x.x`, `1.2.3`): the highest matching version wins, as in
//! Image Builder. Local candidates are the project's
//! `components/NAME-X.Y.Z.yaml` files plus the components being imported.

use semver::Version;

use crate::project::Project;

/// Whether `version` matches `selector` (each part a number or `x`).
pub fn matches(selector: &str, version: &Version) -> bool {
    let parts: Vec<&str> = selector.split('.').collect();
    if parts.len() != 3 {
        return false;
    }
    let have = [version.major, version.minor, version.patch];
    parts
        .iter()
        .zip(have)
        .all(|(p, h)| *p == "x" || p.parse::<u64>() == Ok(h))
}

/// Whether a selector is well formed (`x` parts only after number parts).
pub fn valid_selector(selector: &str) -> bool {
    let parts: Vec<&str> = selector.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| *p == "x" || p.parse::<u64>().is_ok())
        && !parts.windows(2).any(|w| w[0] == "x" && w[1] != "x")
}

/// The highest candidate `(version, stem)` matching `selector`.
pub fn highest<'a>(
    selector: &str,
    candidates: &'a [(Version, String)],
) -> Option<&'a (Version, String)> {
    candidates
        .iter()
        .filter(|(v, _)| matches(selector, v))
        .max_by(|a, b| a.0.cmp(&b.0))
}

/// The file stem of version `v` of component `name`: `NAME-X_Y_Z`.
pub fn stem(name: &str, v: &Version) -> String {
    format!("{name}-{}_{}_{}", v.major, v.minor, v.patch)
}

/// Versions of component `name` in the project: `components/NAME-X_Y_Z.yaml`.
pub fn local_versions(project: &Project, name: &str) -> Vec<(Version, String)> {
    let prefix = format!("{name}-");
    std::fs::read_dir(project.dir("components"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().into_string().ok()?;
            let stem = file
                .strip_suffix(".yaml")
                .or_else(|| file.strip_suffix(".yml"))?;
            let v = Version::parse(&stem.strip_prefix(&prefix)?.replace('_', ".")).ok()?;
            Some((v, stem.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn selectors_pick_the_highest_match() {
        let c = vec![
            (v("1.0.0"), stem("a", &v("1.0.0"))),
            (v("1.4.2"), stem("a", &v("1.4.2"))),
            (v("2.0.0"), stem("a", &v("2.0.0"))),
        ];
        assert_eq!(highest("1.x.x", &c).unwrap().1, "a-1_4_2");
        assert_eq!(highest("x.x.x", &c).unwrap().1, "a-2_0_0");
        assert_eq!(highest("1.0.0", &c).unwrap().1, "a-1_0_0");
        assert!(highest("3.x.x", &c).is_none());
        assert!(valid_selector("1.x.x") && !valid_selector("x.1.x") && !valid_selector("1.x"));
    }
}
