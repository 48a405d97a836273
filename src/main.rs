// mimalloc: the request path allocates many small JSON values; glibc malloc took a third of the CPU (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    ketenpoort::cli::main()
}
