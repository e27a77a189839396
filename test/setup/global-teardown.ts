export default async function globalTeardown(): Promise<void> {
  await globalThis.__DEV_SERVER__?.stop();
}
