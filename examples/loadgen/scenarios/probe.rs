//! The `probe` scenario (see the list in main.rs).

use super::*;

pub(crate) fn probe(ctx: &Ctx, how: &str) -> Result<bool, String> {
    let s = ctx.snap();
    let (soft, hard) = procfs::open_files_limit();
    let lim = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or("unlimited".into());
    ctx.say(format!(
        "server      pid {} ({how})",
        if ctx.server_pids.is_empty() {
            "?".to_string()
        } else {
            ctx.server_pids.iter().map(u32::to_string).collect::<Vec<_>>().join("+")
        }
    ));
    if let Some(srv) = s.server {
        ctx.say(format!(
            "            RSS {} kB ({:.1} MiB), CPU {:.2} s",
            srv.rss_kb,
            mib(srv.rss_kb),
            srv.cpu_ticks as f64 / procfs::CLK_TCK
        ));
    }
    ctx.say(format!("open files  soft {} hard {}", lim(soft), lim(hard)));
    if ctx.json {
        println!(
            "{}",
            json!({
                "scenario": "probe",
                "server_pid": ctx.server_pids.first(),
                "server_pids": ctx.server_pids,
                "server_rss_kb": s.server.map(|v| v.rss_kb),
                "server_cpu_s": s.server.map(|v| v.cpu_ticks as f64 / procfs::CLK_TCK),
                "nofile_soft": soft,
                "nofile_hard": hard,
            })
        );
    }
    Ok(s.server.is_some())
}
