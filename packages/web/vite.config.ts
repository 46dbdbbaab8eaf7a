/**
 * Builds the IDE into dist/: index.html at the root (served at `/`) and every asset, Monaco's
 * workers included, under dist/app/ (served at `/app/`, content-hashed, cached immutably).
 * Nothing is fetched from elsewhere at run time: Monaco comes from node_modules.
 */
import react from '@vitejs/plugin-react'
import { defineConfig } from 'vite'

export default defineConfig({
  root: import.meta.dirname,
  base: '/',
  plugins: [react()],
  build: {
    outDir: 'dist',
    assetsDir: 'app',
    emptyOutDir: true,
    chunkSizeWarningLimit: 8000,
  },
  worker: { format: 'es' },
})
