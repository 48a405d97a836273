// mimalloc: the request path allocates many small JSON values; glibc malloc took a third of the CPU (BENCHMARKS.md).
// Built with `no_thp`: with transparent huge pages its arenas grow RSS in 2 MiB steps (1,000 idle connections: 74 MiB
// with THP, 47 MiB without).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    ketenpoort::cli::main()
}
