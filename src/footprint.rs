//! What hotrun keeps resident while it waits. Start-up (argument parsing, the watches,
//! the first spawn) runs much of hotrun's code once, and the kernel maps code in large
//! chunks around each fault; an idle supervisor then runs a small part of it. Once the
//! loop is about to wait, hotrun gives back the pages of its own executable
//! (`MADV_PAGEOUT`, Linux ≥ 5.4): they are clean file pages, so the ones still needed
//! come back from the page cache at the next touch, and the rest cost nothing. Elsewhere,
//! or where the call fails, nothing happens.

/// Gives back this process's pages of hotrun's executable.
#[cfg(target_os = "linux")]
pub(crate) fn shed_startup_pages() {
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return;
    };
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    for line in maps.lines() {
        // "start-end perms offset dev inode path"
        let mut fields = line.split_whitespace();
        let Some(range) = fields.next() else {
            continue;
        };
        if fields.nth(4).map(std::path::Path::new) != Some(exe.as_path()) {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) else {
            continue;
        };
        // SAFETY: MADV_PAGEOUT on one of this process's own file-backed mappings only
        // unmaps its clean pages (read back from the page cache at the next touch) and
        // marks its written ones for reclaim; no content changes and nothing is freed.
        unsafe {
            libc::madvise(
                start as *mut libc::c_void,
                end.saturating_sub(start),
                libc::MADV_PAGEOUT,
            );
        }
    }
}

/// Gives back this process's pages of hotrun's executable (nothing to do here).
#[cfg(not(target_os = "linux"))]
pub(crate) fn shed_startup_pages() {}
