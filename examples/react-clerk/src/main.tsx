// The real integration: Clerk signs the user in, and its useAuth() values
// go straight into FiregateProvider. Set VITE/ESBUILD-time constants
// CLERK_PUBLISHABLE_KEY and FIREGATE_URL (see README.md).
import { ClerkProvider, OrganizationSwitcher, SignedIn, SignedOut, SignInButton, UserButton, useAuth } from '@clerk/clerk-react';
import { FiregateProvider } from '@firegate/react';
import { createRoot } from 'react-dom/client';
import { App } from './App.js';

declare const CLERK_PUBLISHABLE_KEY: string;
declare const FIREGATE_URL: string;

function Wired(): React.ReactNode {
  const { getToken, userId, orgId } = useAuth();
  return (
    <FiregateProvider url={FIREGATE_URL} getToken={getToken} userId={userId} orgId={orgId} persistence>
      <App
        header={
          <>
            <OrganizationSwitcher />
            <UserButton />
          </>
        }
      />
    </FiregateProvider>
  );
}

createRoot(document.getElementById('root')!).render(
  <ClerkProvider publishableKey={CLERK_PUBLISHABLE_KEY}>
    <SignedIn>
      <Wired />
    </SignedIn>
    <SignedOut>
      <SignInButton />
    </SignedOut>
  </ClerkProvider>,
);
