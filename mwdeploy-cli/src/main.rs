fn main() {
    std::process::exit(mwdeploy_cli::main());
}
