//! "Did you mean ...?": the closest known name to a mistyped one (vendors, subcommands,
//! release names, spec keys), by edit distance, so refusals point at the fix.

/// Edit distance between `a` and `b`, a swap of two neighbours counting as one edit
/// (optimal string alignment; case-insensitive, `-` and `_` equal).
fn distance(a: &str, b: &str) -> usize {
    let norm = |s: &str| -> Vec<char> {
        s.chars()
            .map(|c| {
                if c == '-' {
                    '_'
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect()
    };
    let (a, b) = (norm(a), norm(b));
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        d[i * w] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
        }
    }
    d[a.len() * w + b.len()]
}

/// The known name closest to `typed`, if it is close enough to be a typo.
pub fn closest<'a, I>(typed: &str, known: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let limit = (typed.chars().count() / 3).clamp(1, 3);
    let t = typed.to_ascii_lowercase().replace('-', "_");
    let known: Vec<&'a str> = known.into_iter().collect();
    known
        .iter()
        .map(|k| (distance(typed, k), *k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
        // an old short name (`qemu` for `qemu_uefi`)
        .or_else(|| {
            (t.len() >= 3)
                .then(|| known.iter().copied().find(|k| k.starts_with(&t)))
                .flatten()
        })
}

/// `" (did you mean 'X'?)"` or nothing.
pub fn hint<'a, I>(typed: &str, known: I) -> String
where
    I: IntoIterator<Item = &'a str>,
{
    closest(typed, known)
        .map(|k| format!(" (did you mean '{k}'?)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names_are_suggested_far_ones_not() {
        let known = ["qemu_uefi", "azure", "vmware_ova", "gce"];
        assert_eq!(closest("qemu_uefu", known), Some("qemu_uefi"));
        assert_eq!(closest("QEMU-UEFI", known), Some("qemu_uefi"));
        assert_eq!(closest("azrue", known), Some("azure"));
        assert_eq!(closest("openbsd", known), None);
        assert_eq!(
            closest("stabel", ["alpha", "beta", "stable", "lts"]),
            Some("stable")
        );
        assert_eq!(hint("xyz", known), "");
        assert_eq!(closest("qemu", known), Some("qemu_uefi"));
    }
}
