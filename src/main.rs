fn main() -> anyhow::Result<()> {
    ketenpoort::cli::main()
}
