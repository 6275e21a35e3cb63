// Subcommand entry for src/kms-emulator (placeholder until the capability lands).
export async function run(_argv: string[]): Promise<number> {
  process.stderr.write('cloister: this command is not implemented yet\n');
  return 2;
}
