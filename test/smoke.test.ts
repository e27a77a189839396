import { closeTestClient, testClient } from './helpers/temporal';
import { SEARCH_ATTRIBUTES } from '../src/domain/constants';

afterAll(closeTestClient);

test('the shared dev server is up with the project search attributes registered', async () => {
  const client = await testClient();
  const sa = await client.connection.operatorService.listSearchAttributes({ namespace: 'default' });
  for (const name of Object.keys(SEARCH_ATTRIBUTES)) expect(sa.customAttributes).toHaveProperty(name);
});
