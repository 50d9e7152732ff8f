//! What hotrun keeps resident while it waits. Start-up (argument parsing, the watches,
//! the first spawn) runs much of hotrun's code once, and the kernel maps code in large
//! chunks around each fault; an idle supervisor then runs a small part of it. Once the
//! loop is about to wait (and in the guardian, once it waits), hotrun drops its own page
//! table entries for its executable's read-only mappings: code and constants, never
//! written, so the pages stay in the page cache and the ones still needed come back at the
//! next touch as minor faults (no I/O, no wake-up). Elsewhere, or where a call fails,
//! nothing happens.
//!
//! `MADV_DONTNEED` rather than `MADV_PAGEOUT`: page-out leaves alone every page another
//! process maps, and the guardian (a fork) maps all of hotrun's, so it gave back next to
//! nothing. `MADV_DONTNEED` only forgets this process's mapping, and on a private file
//! mapping it would also throw away pages the process wrote (relocations): only mappings
//! without write permission and without a single private (written) page are touched.

/// Drops this process's mappings of its executable's clean, read-only pages.
#[cfg(target_os = "linux")]
pub(crate) fn shed_startup_pages() {
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return;
    };
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    for (start, end) in clean_read_only(&smaps, &exe) {
        // SAFETY: the range is one of this process's private file mappings of its own
        // executable, without write permission (nothing can write it) and with no
        // private page (nothing was ever written to it, relocations included): every
        // page is the file's own, so dropping the mapping changes no content; the next
        // touch maps the same page again from the page cache.
        unsafe {
            libc::madvise(
                start as *mut libc::c_void,
                end.saturating_sub(start),
                libc::MADV_DONTNEED,
            );
        }
    }
}

/// The address ranges in `smaps` that map `exe` read-only with no private page.
#[cfg(target_os = "linux")]
fn clean_read_only(smaps: &str, exe: &std::path::Path) -> Vec<(usize, usize)> {
    let mut ranges = Vec::new();
    // The mapping being read: its range, if it is a read-only mapping of `exe`, and
    // whether a private page was seen in it.
    let mut current: Option<((usize, usize), bool)> = None;
    let mut finish = |current: &mut Option<((usize, usize), bool)>| {
        if let Some((range, false)) = current.take() {
            ranges.push(range);
        }
    };
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else {
            continue;
        };
        if let Some((start, end)) = first.split_once('-')
            && let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            )
        {
            // A mapping's first line: "start-end perms offset dev inode path".
            finish(&mut current);
            let perms = fields.next().unwrap_or("");
            let path = fields.nth(3).map(std::path::Path::new);
            if path == Some(exe) && perms.starts_with('r') && perms.get(1..2) == Some("-") {
                current = Some(((start, end), false));
            }
        } else if let Some((_, private)) = current.as_mut() {
            // "Anonymous: N kB": pages of the file mapping that are this process's own
            // copies (written once, as relocations are).
            if first == "Anonymous:" && fields.next().is_some_and(|kb| kb != "0") {
                *private = true;
            }
        }
    }
    finish(&mut current);
    ranges
}

/// Drops this process's mappings of its executable's pages (nothing to do here).
#[cfg(not(target_os = "linux"))]
pub(crate) fn shed_startup_pages() {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::clean_read_only;
    use std::path::Path;

    #[test]
    fn only_read_only_mappings_of_the_executable_without_private_pages() {
        let smaps = "\
1000-2000 r--p 00000000 fe:00 7 /bin/hotrun
Rss: 8 kB
Anonymous: 0 kB
2000-5000 r-xp 00001000 fe:00 7 /bin/hotrun
Anonymous: 0 kB
5000-6000 r--p 00004000 fe:00 7 /bin/hotrun
Anonymous: 4 kB
6000-7000 rw-p 00005000 fe:00 7 /bin/hotrun
Anonymous: 0 kB
7000-8000 r-xp 00000000 fe:00 9 /lib/libc.so.6
Anonymous: 0 kB
";
        assert_eq!(
            clean_read_only(smaps, Path::new("/bin/hotrun")),
            vec![(0x1000, 0x2000), (0x2000, 0x5000)]
        );
    }
}
