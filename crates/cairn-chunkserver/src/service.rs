//! The `cairn.v1.ChunkService` gRPC service: thin adapters over `ChunkServer`.

use std::pin::Pin;
use std::sync::Arc;

use cairn_proto::pb;
use cairn_proto::pb::chunk_service_server::ChunkService;
use futures::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::server::ChunkServer;

/// gRPC face of a chunk server.
#[derive(Clone)]
pub struct ChunkServiceImpl {
    pub server: Arc<ChunkServer>,
}

type ReadStream = Pin<Box<dyn Stream<Item = Result<pb::ReadResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ChunkService for ChunkServiceImpl {
    async fn write(
        &self,
        req: Request<Streaming<pb::WriteRequest>>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        Ok(Response::new(
            self.server.clone().write(req.into_inner()).await?,
        ))
    }

    type ReadStream = ReadStream;

    async fn read(
        &self,
        req: Request<pb::ReadRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        let rx = self.server.clone().read(req.into_inner())?;
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn replica_state(
        &self,
        req: Request<pb::ReplicaStateRequest>,
    ) -> Result<Response<pb::ReplicaStateResponse>, Status> {
        Ok(Response::new(
            self.server.replica_state(req.into_inner()).await?,
        ))
    }

    async fn set_version(
        &self,
        req: Request<pb::SetVersionRequest>,
    ) -> Result<Response<pb::SetVersionResponse>, Status> {
        self.server.set_version(req.into_inner()).await?;
        Ok(Response::new(pb::SetVersionResponse {}))
    }
}
